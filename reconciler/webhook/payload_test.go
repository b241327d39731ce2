package webhook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeReadsRefCommitAndDeletion(t *testing.T) {
	sha256ID := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		k    kind
		body string
		want Event
		err  string
	}{
		{"full branch ref", kindPush, `{"ref":"refs/heads/release/2.0","after":"` + mainCommit + `"}`, Event{Ref: "refs/heads/release/2.0", Branch: "release/2.0", After: mainCommit}, ""},
		{"bare branch name", kindPush, `{"ref":"main"}`, Event{Ref: "refs/heads/main", Branch: "main"}, ""},
		{"SHA-256 commit", kindPush, `{"ref":"main","after":"` + sha256ID + `"}`, Event{Ref: "refs/heads/main", Branch: "main", After: sha256ID}, ""},
		{"deleted flag", kindPush, `{"ref":"refs/heads/x","after":"` + mainCommit + `","deleted":true}`, Event{Ref: "refs/heads/x", Branch: "x", Deleted: true}, ""},
		{"zero SHA-256 after", kindPush, `{"ref":"refs/heads/x","after":"` + strings.Repeat("0", 64) + `"}`, Event{Ref: "refs/heads/x", Branch: "x", Deleted: true}, ""},
		{"tag", kindPush, `{"ref":"refs/tags/v1"}`, Event{Ref: "refs/tags/v1"}, ""},
		{"other ref", kindPush, `{"ref":"refs/pull/7/head"}`, Event{Ref: "refs/pull/7/head"}, ""},
		{"delete event of a branch", kindDelete, `{"ref":"feature/a","ref_type":"branch"}`, Event{Ref: "refs/heads/feature/a", Branch: "feature/a", Deleted: true}, ""},
		{"delete event with a full ref", kindDelete, `{"ref":"refs/heads/feature/a","ref_type":"branch"}`, Event{Ref: "refs/heads/feature/a", Branch: "feature/a", Deleted: true}, ""},
		{"delete event of a tag", kindDelete, `{"ref":"v1","ref_type":"tag"}`, Event{Ref: "refs/tags/v1", Deleted: true}, ""},
		{"no ref", kindPush, `{"after":"` + mainCommit + `"}`, Event{}, `"ref" is missing`},
		{"empty branch", kindPush, `{"ref":"refs/heads/"}`, Event{}, "names no branch"},
		{"short commit", kindPush, `{"ref":"main","after":"9e8d7c6"}`, Event{}, `"after" "9e8d7c6" is not a commit id`},
		{"ref of the wrong type", kindPush, `{"ref":7}`, Event{}, `"ref" is number, not string`},
		{"array", kindPush, `[]`, Event{}, "a JSON object is expected, not array"},
		{"empty body", kindPush, ``, Event{}, "not JSON at byte 0"},
		{"trailing garbage", kindPush, `{"ref":"main"} x`, Event{}, "not JSON at byte"},
		{"delete of an unknown ref type", kindDelete, `{"ref":"x","ref_type":"note"}`, Event{}, `"ref_type" "note" is neither`},
		{"delete without ref", kindDelete, `{"ref_type":"branch"}`, Event{}, `"ref" is missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode(tc.k, []byte(tc.body))
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one containing %q", err, tc.err)
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	samples, err := filepath.Glob("testdata/*/*.json")
	if err != nil || len(samples) == 0 {
		f.Fatalf("no samples in testdata (%v)", err)
	}
	for _, name := range samples {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.HasSuffix(name, "delete.json"), b)
	}
	f.Fuzz(func(t *testing.T, deletion bool, body []byte) {
		k := kindPush
		if deletion {
			k = kindDelete
		}
		ev, err := decode(k, body)
		if err != nil {
			if ev != (Event{}) {
				t.Errorf("error %v came with an event %+v", err, ev)
			}
			return
		}
		if !strings.HasPrefix(ev.Ref, "refs/") {
			t.Errorf("ref %q is not a full ref name", ev.Ref)
		}
		if ev.Branch != "" && ev.Ref != "refs/heads/"+ev.Branch {
			t.Errorf("branch %q does not match ref %q", ev.Branch, ev.Ref)
		}
		if ev.Branch == "" && strings.HasPrefix(ev.Ref, "refs/heads/") {
			t.Errorf("ref %q lost its branch", ev.Ref)
		}
		if ev.After != "" && (ev.Deleted || !isCommitID(ev.After) || strings.Trim(ev.After, "0") == "") {
			t.Errorf("after %q with deleted=%v", ev.After, ev.Deleted)
		}
		if k == kindDelete && !ev.Deleted {
			t.Errorf("delete event %+v not marked deleted", ev)
		}
	})
}
