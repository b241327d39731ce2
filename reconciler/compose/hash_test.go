package compose

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const hashBase = `
services:
  web:
    image: busybox:1.36
    command: ["httpd", "-f"]
    environment:
      GREETING: ${GREETING:-hi}
    depends_on: [db]
  db:
    image: busybox:1.36
`

func fingerprint(t *testing.T, compose string, env map[string]string) Fingerprint {
	t.Helper()
	p := mustLoad(t, map[string]string{"compose.yaml": compose}, env)
	fp, err := ServiceFingerprint(p, p.Services["web"], p.WorkingDir)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func TestFingerprintIsStableAcrossLoads(t *testing.T) {
	a, b := fingerprint(t, hashBase, nil), fingerprint(t, hashBase, nil)
	if a.Hash != b.Hash || a.EncodeKeys() != b.EncodeKeys() {
		t.Fatal("the same file hashed differently")
	}
}

func TestFingerprintChangesWithResolvedConfigAndNamesTheField(t *testing.T) {
	base := fingerprint(t, hashBase, nil)
	changed := fingerprint(t, hashBase, map[string]string{"GREETING": "hello"})
	if changed.Hash == base.Hash {
		t.Fatal("an interpolated value change did not change the hash")
	}
	if got := changed.ChangedKeys(base.EncodeKeys()); !slices.Equal(got, []string{"environment"}) {
		t.Fatalf("changed keys = %v", got)
	}
}

func TestFingerprintIgnoresWhatNeedsNoRecreate(t *testing.T) {
	base := fingerprint(t, hashBase, nil)
	for name, compose := range map[string]string{
		"scale":       hashBase + "    scale: 3\n",
		"pull_policy": hashBase + "    pull_policy: always\n",
		"depends_on":  strings.Replace(hashBase, "    depends_on: [db]\n", "", 1),
		"build":       hashBase + "    build: .\n",
	} {
		if fp := fingerprint(t, compose, nil); fp.Hash != base.Hash {
			t.Errorf("%s changed the hash (changed keys %v)", name, fp.ChangedKeys(base.EncodeKeys()))
		}
	}
}

func TestChangedKeysNamesAddedAndRemovedFields(t *testing.T) {
	base := fingerprint(t, hashBase, nil)
	withUser := fingerprint(t, strings.Replace(hashBase, `command: ["httpd", "-f"]`, `user: "1000"`, 1), nil)
	if got := withUser.ChangedKeys(base.EncodeKeys()); !slices.Equal(got, []string{"command", "user"}) {
		t.Fatalf("changed keys = %v", got)
	}
}

func TestFingerprintCoversTheContentOfFilesMountedFromTheCheckout(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yaml", `
services:
  web:
    image: busybox
    volumes: ["./html:/www:ro", "/etc/hostname:/host:ro"]
    secrets: [token]
secrets:
  token:
    file: ./token.txt
`)
	write("html/index.html", "v1")
	write("token.txt", "secret")
	hash := func() Fingerprint {
		p, err := Load(context.Background(), Source{Dir: dir, Name: "proj"})
		if err != nil {
			t.Fatal(err)
		}
		fp, err := ServiceFingerprint(p, p.Services["web"], dir)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	base := hash()
	if again := hash(); again.Hash != base.Hash {
		t.Fatal("the same checkout hashed differently")
	}
	for _, change := range [][2]string{{"html/index.html", "v2"}, {"token.txt", "rotated"}, {"html/new.css", "x"}} {
		write(change[0], change[1])
		fp := hash()
		if fp.Hash == base.Hash || !slices.Equal(fp.ChangedKeys(base.EncodeKeys()), []string{"mounted files"}) {
			t.Errorf("changing %s: changed keys %v", change[0], fp.ChangedKeys(base.EncodeKeys()))
		}
		base = fp
	}
}
