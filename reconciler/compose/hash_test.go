package compose

import (
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
	fp, err := ServiceFingerprint(mustLoad(t, map[string]string{"compose.yaml": compose}, env).Services["web"])
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
