package registry

import (
	"context"
	"strings"
	"testing"
)

// semverTags is a repository's tag list in the wild: two prefix styles,
// pre-releases, non-semver tags, and an order that is not the version order.
var semverTags = []string{
	"latest", "1.2.10", "1.2.3", "2.0.0-rc1", "1.3.0", "2.0.0", "1.2", "stable",
	"v1.2.3", "v1.2.4", "v1.4.0", "v2.1.0", "v3.0.0-beta.1", "1.2.11-rc1", "2.0.1-rc.2", "01.2.3",
}

func TestNewestTag(t *testing.T) {
	for _, tc := range []struct {
		current string
		policy  Policy
		want    string
	}{
		{"1.2.3", PolicySemver, "2.0.0"},
		{"1.2.3", PolicySemverMinor, "1.3.0"},
		{"1.2.3", PolicySemverPatch, "1.2.10"},
		{"v1.2.3", PolicySemver, "v2.1.0"},
		{"v1.2.3", PolicySemverMinor, "v1.4.0"},
		{"v1.2.3", PolicySemverPatch, "v1.2.4"},
		{"2.0.0", PolicySemver, "2.0.0"},
		{"1.3.0", PolicySemverPatch, "1.3.0"},
		{"2.0.0-rc1", PolicySemver, "2.0.1-rc.2"},
		{"2.0.0-rc1", PolicySemverPatch, "2.0.1-rc.2"},
		{"1.2.11-rc1", PolicySemverPatch, "1.2.11-rc1"},
		{"v2.1.0", PolicySemver, "v2.1.0"}, // v3.0.0-beta.1 is a pre-release
	} {
		got, err := newestTag(tc.current, semverTags, tc.policy)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.current, tc.policy, err)
		}
		if got != tc.want {
			t.Errorf("%s with %s: want %s, got %s", tc.current, tc.policy, tc.want, got)
		}
	}
}

func TestSemverPolicyNeedsASemverTag(t *testing.T) {
	for _, current := range []string{"latest", "1.2", "stable", "01.2.3"} {
		if _, err := newestTag(current, semverTags, PolicySemver); err == nil || !strings.Contains(err.Error(), current) {
			t.Errorf("tag %q: want an error naming it, got %v", current, err)
		}
	}
}

func TestSemverPolicyMovesToTheNewestAllowedTag(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t)
	reg.push("app:"+semverTags[0], img)
	for _, tag := range semverTags[1:] {
		reg.tag("app:"+tag, img)
	}
	local := []string{reg.repoDigest("app", digestOf(t, img))}
	c := newTestChecker(t, Options{})

	for _, tc := range []struct {
		current string
		policy  Policy
		want    string
	}{
		{"1.2.3", PolicySemver, "2.0.0"},
		{"1.2.3", PolicySemverMinor, "1.3.0"},
		{"1.2.3", PolicySemverPatch, "1.2.10"},
		{"v1.2.3", PolicySemverMinor, "v1.4.0"},
		{"2.0.0", PolicySemver, ""},
	} {
		res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:" + tc.current), Policy: tc.policy, LocalRepoDigests: local})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.current, tc.policy, err)
		}
		if tc.want == "" {
			if res.Update || res.Ref != reg.ref("app:"+tc.current) {
				t.Errorf("%s with %s: want no move and no update, got %+v", tc.current, tc.policy, res)
			}
			continue
		}
		if !res.Update || res.Ref != reg.ref("app:"+tc.want) || !strings.Contains(res.Reason, tc.want) {
			t.Errorf("%s with %s: want an update to %s, got %+v", tc.current, tc.policy, tc.want, res)
		}
	}
}

func TestSemverPolicyFollowsTheDigestOfTheNewestTag(t *testing.T) {
	reg := newTestRegistry(t)
	old := reg.push("app:1.2.3", randomImage(t))
	reg.push("app:1.2.3", randomImage(t))
	c := newTestChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:1.2.3"), Policy: PolicySemverPatch, LocalRepoDigests: []string{reg.repoDigest("app", old)}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Update || res.Ref != reg.ref("app:1.2.3") {
		t.Fatalf("a re-pushed newest tag is an update of that tag, got %+v", res)
	}
}

func TestParsePolicy(t *testing.T) {
	for value, want := range map[string]Policy{
		"": PolicyDigest, "digest": PolicyDigest, "none": PolicyNone, " semver ": PolicySemver,
		"semver:minor": PolicySemverMinor, "semver:patch": PolicySemverPatch,
	} {
		if got, err := ParsePolicy(value); err != nil || got != want {
			t.Errorf("%q: want %s, got %s (%v)", value, want, got, err)
		}
	}
	for _, value := range []string{"Digest", "semver:major", "never", "semver:"} {
		if _, err := ParsePolicy(value); err == nil {
			t.Errorf("%q: want an error", value)
		}
	}
}

func TestBadPolicyLabelNamesServiceAndLabel(t *testing.T) {
	_, err := PolicyFor("api", map[string]string{PolicyLabel: "weekly"})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`"api"`, "dev.hawser.update", `"weekly"`, "semver:minor"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error should contain %s: %v", want, err)
		}
	}
	if p, err := PolicyFor("web", nil); err != nil || p != PolicyDigest {
		t.Errorf("no label: want digest, got %s (%v)", p, err)
	}
}
