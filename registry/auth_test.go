package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/pkg/authconfig"
)

// useDockerConfig points the Docker config (and HOME, so the host's own
// ~/.docker cannot interfere) at a temporary directory holding config.
func useDockerConfig(t *testing.T, config map[string]any) {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", t.TempDir())
}

func basicAuth(user, password string) map[string]string {
	return map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
}

// dockerConfigChecker is a Checker with the default keychain: the Docker
// config, as the docker CLI reads it.
func dockerConfigChecker(t *testing.T, opts Options) *Checker {
	t.Helper()
	opts.Platform = "linux/amd64"
	opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func decodePullAuth(t *testing.T, encoded string) (user, password string) {
	t.Helper()
	ac, err := authconfig.Decode(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return ac.Username, ac.Password
}

func TestDockerConfigCredentialsGetAToken(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	reg.requireLogin("bot", "hunter2")
	useDockerConfig(t, map[string]any{"auths": map[string]any{reg.host(): basicAuth("bot", "hunter2")}})
	c := dockerConfigChecker(t, Options{})

	res, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Update {
		t.Fatalf("want up to date, got %+v", res)
	}
	auth, err := c.PullAuth(context.Background(), reg.ref("app:stable"))
	if err != nil {
		t.Fatal(err)
	}
	if user, password := decodePullAuth(t, auth); user != "bot" || password != "hunter2" {
		t.Fatalf("pull auth should carry the Docker config login, got user %q", user)
	}
}

func TestExpiredTokenIsRenewedWithinTheCheck(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	reg.requireLogin("bot", "hunter2")
	c := newTestChecker(t, Options{Auth: Credentials{reg.host(): {Username: "bot", Password: "hunter2"}}})
	chk := Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}
	if _, err := c.Check(context.Background(), chk); err != nil {
		t.Fatal(err)
	}

	reg.expireToken()
	n := reg.requestCount()
	if res, err := c.Check(context.Background(), chk); err != nil || res.Update {
		t.Fatalf("want a renewed token and up to date, got %+v, %v", res, err)
	}
	want := []string{"HEAD /v2/app/manifests/stable", "GET /token", "HEAD /v2/app/manifests/stable"}
	if got := reg.requestsSince(n); !slices.Equal(got, want) {
		t.Fatalf("want %v, made %v", want, got)
	}
}

func TestDockerCredentialHelperIsRun(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	reg.requireLogin("helper-bot", "from-helper")
	bin := t.TempDir()
	helper := "#!/bin/sh\ncat >/dev/null\n" +
		`echo '{"ServerURL":"` + reg.host() + `","Username":"helper-bot","Secret":"from-helper"}'` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-hawsertest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	useDockerConfig(t, map[string]any{"credHelpers": map[string]string{reg.host(): "hawsertest"}})
	c := dockerConfigChecker(t, Options{})

	if _, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}); err != nil {
		t.Fatal(err)
	}
}

func TestOverrideCredentialsWinOverDockerConfig(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.push("app:stable", randomImage(t))
	reg.requireLogin("bot", "hunter2")
	useDockerConfig(t, map[string]any{"auths": map[string]any{reg.host(): basicAuth("bot", "stale-password")}})
	override, err := ParseCredentials(reg.host() + "=bot:hunter2")
	if err != nil {
		t.Fatal(err)
	}
	c := dockerConfigChecker(t, Options{Auth: override})

	if _, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable"), LocalRepoDigests: []string{reg.repoDigest("app", d)}}); err != nil {
		t.Fatal(err)
	}
	auth, err := c.PullAuth(context.Background(), reg.ref("app:stable"))
	if err != nil {
		t.Fatal(err)
	}
	if _, password := decodePullAuth(t, auth); password != "hunter2" {
		t.Fatal("pull auth should carry the override's password, not the Docker config's")
	}
}

func TestRejectedCredentialsNameTheirSourceNotTheSecret(t *testing.T) {
	reg := newTestRegistry(t)
	reg.push("app:stable", randomImage(t))
	reg.requireLogin("bot", "hunter2")
	var logs syncBuffer
	c := newTestChecker(t, Options{
		Auth: Credentials{reg.host(): {Username: "bot", Password: "wrong-pa55word"}},
		Log:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	_, err := c.Check(context.Background(), Check{Ref: reg.ref("app:stable")})
	if err == nil {
		t.Fatal("want an error for a wrong password")
	}
	t.Log(err)
	if IsTransient(err) {
		t.Errorf("refused credentials are not transient: %v", err)
	}
	if !strings.Contains(err.Error(), "HAWSER_REGISTRY_AUTH") || !strings.Contains(err.Error(), reg.host()) {
		t.Errorf("error should name the registry and where the credentials came from: %v", err)
	}
	for what, text := range map[string]string{"error": err.Error(), "log": logs.String()} {
		if strings.Contains(text, "wrong-pa55word") {
			t.Errorf("the password leaked into the %s: %s", what, text)
		}
	}
}

func TestAnonymousPullAuthIsAnEmptyObject(t *testing.T) {
	c := newTestChecker(t, Options{})
	auth, err := c.PullAuth(context.Background(), "127.0.0.1:5000/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.URLEncoding.DecodeString(auth); err != nil || string(raw) != "{}" {
		t.Fatalf("want base64url of {}, got %q (%v)", auth, err)
	}
}

func TestParseCredentials(t *testing.T) {
	creds, err := ParseCredentials(" ghcr.io=bot:tok:en=x , docker.io=me:pw,registry.lan:5000=deploy:s3cret,")
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{
		"ghcr.io":           {Username: "bot", Password: "tok:en=x"},
		"index.docker.io":   {Username: "me", Password: "pw"},
		"registry.lan:5000": {Username: "deploy", Password: "s3cret"},
	}
	if len(creds) != len(want) {
		t.Fatalf("want %d hosts, got %d", len(want), len(creds))
	}
	for host, c := range want {
		if creds[host] != c {
			t.Errorf("host %s: want user %q, got %q", host, c.Username, creds[host].Username)
		}
	}
}

func TestBadCredentialsEntriesNameTheEntryNotTheSecret(t *testing.T) {
	for _, value := range []string{
		"ghcr.io:bot:s3cret",                             // no "="
		"ghcr.io=bots3cret",                              // no ":"
		"ghcr.io=:s3cret",                                // no user
		"ghcr.io=bot:",                                   // no password
		"https://ghcr.io=bot:s3cret",                     // not a host
		"ghcr.io/org=bot:s3cret",                         // not a host
		"a.io=x:y,ghcr.io=bot:s3cret,ghcr.io=bot:s3cret", // twice
	} {
		_, err := ParseCredentials(value)
		if err == nil {
			t.Errorf("%q: want an error", value)
			continue
		}
		if !strings.Contains(err.Error(), "HAWSER_REGISTRY_AUTH entry") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error should name the entry and hide the secret: %v", value, err)
		}
	}
}

func TestCredentialNeverPrintsItsPassword(t *testing.T) {
	creds := Credentials{"ghcr.io": {Username: "bot", Password: "s3cret"}}
	var logs syncBuffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("creds", "cred", creds["ghcr.io"], "all", creds)
	for _, text := range []string{
		fmt.Sprint(creds), fmt.Sprintf("%+v", creds), fmt.Sprintf("%#v", creds),
		fmt.Sprintf("%v", creds["ghcr.io"]), logs.String(),
	} {
		if strings.Contains(text, "s3cret") || !strings.Contains(text, "bot") {
			t.Errorf("want the user without the password, got %s", text)
		}
	}
}
