package preview

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPreviewEnvGetsOnlyInheritedHostKeys(t *testing.T) {
	host := map[string]string{
		"DB_PASSWORD":  "prod-secret",
		"STRIPE_KEY":   "sk_live_x",
		"TZ":           "Europe/Berlin",
		"PUBLIC_URL":   "https://shop.example.com",
		"PUBLIC_NAME":  "Shop",
		"PUBLICITY":    "no",
		"HAWSER_TOKEN": "t",
	}
	for _, tc := range []struct {
		name    string
		inherit []string
		want    map[string]string
	}{
		{name: "nothing listed", want: map[string]string{}},
		{name: "names and a glob", inherit: []string{"TZ", "PUBLIC_*"}, want: map[string]string{
			"TZ": "Europe/Berlin", "PUBLIC_URL": "https://shop.example.com", "PUBLIC_NAME": "Shop",
		}},
		{name: "a name not on the host", inherit: []string{"MISSING"}, want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Env(host, tc.inherit, nil)
			if !maps.Equal(got, tc.want) {
				t.Errorf("Env = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPreviewOverlayWinsOverInheritedKeys(t *testing.T) {
	host := map[string]string{"TZ": "UTC", "DB_HOST": "prod-db", "DB_PASSWORD": "prod-secret"}
	overlay := map[string]string{"DB_HOST": "db", "DB_PASSWORD": "preview", "FEATURE_FLAGS": "all"}
	got := Env(host, []string{"TZ", "DB_HOST"}, overlay)
	want := map[string]string{"TZ": "UTC", "DB_HOST": "db", "DB_PASSWORD": "preview", "FEATURE_FLAGS": "all"}
	if !maps.Equal(got, want) {
		t.Errorf("Env = %v, want %v", got, want)
	}
}

func TestParseInherit(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: " TZ , PUBLIC_* ,,SENTRY_?SN ", want: []string{"TZ", "PUBLIC_*", "SENTRY_?SN"}},
		{in: "[A-Z]*_URL", want: []string{"[A-Z]*_URL"}},
		{in: "TZ,PUBLIC_[", wantErr: `"PUBLIC_["`},
		{in: "TZ PUBLIC_URL", wantErr: `"TZ PUBLIC_URL"`},
		{in: "A=B", wantErr: `"A=B"`},
	} {
		got, err := ParseInherit(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseInherit(%q) = %v, %v; want an error naming %s", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseInherit(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadOverlayReadsEnvPreview(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, OverlayFile), `# preview settings
DB_HOST=db
DB_URL="postgres://${DB_HOST}/shop"
export FEATURE='on'
`)
	got, err := LoadOverlay(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DB_HOST": "db", "DB_URL": "postgres://db/shop", "FEATURE": "on"}
	if !maps.Equal(got, want) {
		t.Errorf("LoadOverlay = %v, want %v", got, want)
	}
}

func TestMissingOverlayIsEmpty(t *testing.T) {
	got, err := LoadOverlay(t.TempDir())
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("LoadOverlay = %v, %v; want an empty map", got, err)
	}
}

func TestMissingCheckoutIsAnError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if _, err := LoadOverlay(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadOverlay = %v, want an error naming %s", err, dir)
	}
}

func TestMalformedOverlayErrorNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, OverlayFile)
	writeFile(t, path, "A=1\nFOO BAR=2\n")
	_, err := LoadOverlay(dir)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("LoadOverlay = %v, want an error naming %s and line 2", err, path)
	}
}

func TestOverlayCannotReadTheHostEnvironment(t *testing.T) {
	t.Setenv("HAWSER_TEST_PROD_SECRET", "hunter2")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, OverlayFile), "LEAK=${HAWSER_TEST_PROD_SECRET}\nHAWSER_TEST_PROD_SECRET\n")
	got, err := LoadOverlay(dir)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range got {
		if strings.Contains(v, "hunter2") {
			t.Errorf("overlay key %s = %q: the host environment leaked into it", k, v)
		}
	}
}

func TestOverlaySymlinkOutOfTheCheckoutIsRefused(t *testing.T) {
	hostEnv := filepath.Join(t.TempDir(), ".env")
	writeFile(t, hostEnv, "DB_PASSWORD=prod-secret\n")
	dir := t.TempDir()
	if err := os.Symlink(hostEnv, filepath.Join(dir, OverlayFile)); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOverlay(dir)
	if err == nil || !strings.Contains(err.Error(), OverlayFile) {
		t.Errorf("LoadOverlay = %v, %v; want an error naming the file", got, err)
	}
}
