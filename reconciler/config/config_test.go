package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseIn parses body as the file dir/.env.
func parseIn(t *testing.T, dir, body string) (*Config, error) {
	t.Helper()
	return Parse(filepath.Join(dir, ".env"), []byte(body), dir)
}

// problems returns the list inside err, failing if err is not an Errors.
func problems(t *testing.T, err error) Errors {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not an Errors", err, err)
	}
	return es
}

func TestEmptyFileDeploysHelloFromItsOwnDirectory(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parseIn(t, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Repo", cfg.Repo, dir},
		{"Branch", cfg.Branch, ""},
		{"Path", cfg.Path, "examples/hello"},
		{"ComposeFiles", len(cfg.ComposeFiles), 0},
		{"Project", cfg.Project, "hello"},
		{"Profiles", len(cfg.Profiles), 0},
		{"ScheduleSpec", cfg.ScheduleSpec, "@every 1m"},
		{"ScheduleJitter", cfg.ScheduleJitter, 5 * time.Second},
		{"StateDir", cfg.StateDir, filepath.Join(dir, "state")},
		{"AdminAddr", cfg.AdminAddr, "127.0.0.1:9180"},
		{"LogFormat", cfg.LogFormat, "text"},
		{"LogLevel", cfg.LogLevel, slog.LevelInfo},
		{"GitToken", cfg.GitToken.Reveal(), ""},
		{"GitSSHKey", cfg.GitSSHKey, ""},
		{"GitKnownHosts", cfg.GitKnownHosts, ""},
		{"KeepCheckouts", cfg.KeepCheckouts, 5},
		{"HealthTimeout", cfg.HealthTimeout, 60 * time.Second},
		{"Env", len(cfg.Env), 0},
		{"Dir", cfg.Dir, dir},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if next := cfg.Schedule.Next(start); next != start.Add(time.Minute) {
		t.Errorf("default schedule: next tick after %v is %v, want a minute later", start, next)
	}
}

func TestEveryKeyHasItsDefaultWhenAbsent(t *testing.T) {
	// An absent key and a key written with its default value are the same
	// configuration: the table's defaults are the real ones.
	dir := t.TempDir()
	var body strings.Builder
	for _, k := range Keys() {
		body.WriteString(k.Name + "=" + k.Default + "\n")
	}
	explicit, err := parseIn(t, dir, body.String())
	if err != nil {
		t.Fatal(err)
	}
	implicit, err := parseIn(t, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if explicit.Redacted() != implicit.Redacted() {
		t.Errorf("explicit defaults:\n%s\nabsent keys:\n%s", explicit.Redacted(), implicit.Redacted())
	}
}

// keyCase is one line of a .env and what parsing it must give.
type keyCase struct {
	key, value string
	wantErr    string            // substring of the message; "" means valid
	check      func(*Config) any // with want: a field that must come out so
	want       any
}

func keyCases(dir string) []keyCase {
	return []keyCase{
		{"HAWSER_REPO", ".", "", func(c *Config) any { return c.Repo }, dir},
		{"HAWSER_REPO", "app", "", func(c *Config) any { return c.Repo }, filepath.Join(dir, "app")},
		{"HAWSER_REPO", "app/../app/", "", func(c *Config) any { return c.Repo }, filepath.Join(dir, "app")},
		{"HAWSER_REPO", filepath.Join(dir, "app"), "", func(c *Config) any { return c.Repo }, filepath.Join(dir, "app")},
		{"HAWSER_REPO", "https://git.example.com/team/shop.git", "", func(c *Config) any { return c.Repo }, "https://git.example.com/team/shop.git"},
		{"HAWSER_REPO", "git@git.example.com:team/shop.git", "", func(c *Config) any { return c.Repo }, "git@git.example.com:team/shop.git"},
		{"HAWSER_REPO", "file://" + filepath.Join(dir, "app"), "", nil, nil},
		{"HAWSER_REPO", "missing", "no such file or directory", nil, nil},
		{"HAWSER_REPO", "key", "is not a directory", nil, nil},
		{"HAWSER_REPO", "file:///nonexistent/repo", "no such file or directory", nil, nil},
		{"HAWSER_REPO", "ftp://git.example.com/shop.git", "unsupported URL scheme", nil, nil},
		{"HAWSER_REPO", "https://bot:pw@git.example.com/shop.git", "HAWSER_GIT_TOKEN", nil, nil},
		{"HAWSER_REPO", "https://ghp_token@git.example.com/shop.git", "HAWSER_GIT_TOKEN", nil, nil},
		{"HAWSER_REPO", "", "empty", nil, nil},
		{"HAWSER_BRANCH", "main", "", func(c *Config) any { return c.Branch }, "main"},
		{"HAWSER_BRANCH", "feature/cart", "", func(c *Config) any { return c.Branch }, "feature/cart"},
		{"HAWSER_BRANCH", "", "", func(c *Config) any { return c.Branch }, ""},
		{"HAWSER_BRANCH", "a..b", "not a valid branch name", nil, nil},
		{"HAWSER_BRANCH", "refs/heads/main", "without refs/heads/", nil, nil},
		{"HAWSER_PATH", "deploy/prod", "", func(c *Config) any { return c.Path }, "deploy/prod"},
		{"HAWSER_PATH", ".", "", func(c *Config) any { return c.Path }, "."},
		{"HAWSER_PATH", "", "", func(c *Config) any { return c.Path }, "."},
		{"HAWSER_PATH", "/srv/app", "relative path inside the repository", nil, nil},
		{"HAWSER_PATH", "../other", "relative path inside the repository", nil, nil},
		{"HAWSER_PATH", "a/../../b", "relative path inside the repository", nil, nil},
		{"HAWSER_PATH", "a/./b", `not a clean path (write "a/b")`, nil, nil},
		{"HAWSER_PATH", "deploy/", `not a clean path (write "deploy")`, nil, nil},
		{"HAWSER_COMPOSE_FILES", "compose.yaml, compose.prod.yaml,", "", func(c *Config) any { return strings.Join(c.ComposeFiles, "|") }, "compose.yaml|compose.prod.yaml"},
		{"HAWSER_COMPOSE_FILES", "base/compose.yaml", "", func(c *Config) any { return strings.Join(c.ComposeFiles, "|") }, "base/compose.yaml"},
		{"HAWSER_COMPOSE_FILES", "compose.yaml,../secret.yaml", "../secret.yaml", nil, nil},
		{"HAWSER_PROJECT", "shop_2-prod", "", func(c *Config) any { return c.Project }, "shop_2-prod"},
		{"HAWSER_PROJECT", "", "", func(c *Config) any { return c.Project }, "hello"},
		{"HAWSER_PROJECT", "My Shop", `(for example "myshop")`, nil, nil},
		{"HAWSER_PROJECT", "_shop", "invalid project name", nil, nil},
		{"HAWSER_PROFILES", "web, debug", "", func(c *Config) any { return strings.Join(c.Profiles, "|") }, "web|debug"},
		{"HAWSER_PROFILES", "*", "", func(c *Config) any { return strings.Join(c.Profiles, "|") }, "*"},
		{"HAWSER_PROFILES", "web,with space", `invalid profile name "with space"`, nil, nil},
		{"HAWSER_SCHEDULE", "*/5 * * * *", "", func(c *Config) any { return c.ScheduleSpec }, "*/5 * * * *"},
		{"HAWSER_SCHEDULE", "30 */5 * * * *", "", func(c *Config) any { return c.ScheduleSpec }, "30 */5 * * * *"},
		{"HAWSER_SCHEDULE", "@hourly", "", func(c *Config) any { return c.ScheduleSpec }, "@hourly"},
		{"HAWSER_SCHEDULE", "CRON_TZ=UTC 0 3 * * *", "", func(c *Config) any { return c.ScheduleSpec }, "CRON_TZ=UTC 0 3 * * *"},
		{"HAWSER_SCHEDULE", "TZ=UTC", "must be followed by a schedule", nil, nil},
		{"HAWSER_SCHEDULE", "61 * * * *", "invalid schedule", nil, nil},
		{"HAWSER_SCHEDULE", "@fortnightly", "invalid schedule", nil, nil},
		{"HAWSER_SCHEDULE", "", "empty; remove the line to use the default @every 1m", nil, nil},
		{"HAWSER_SCHEDULE_JITTER", "0", "", func(c *Config) any { return c.ScheduleJitter }, time.Duration(0)},
		{"HAWSER_SCHEDULE_JITTER", "1m30s", "", func(c *Config) any { return c.ScheduleJitter }, 90 * time.Second},
		{"HAWSER_SCHEDULE_JITTER", "-1s", "must not be negative", nil, nil},
		{"HAWSER_SCHEDULE_JITTER", "5", "not a duration", nil, nil},
		{"HAWSER_STATE_DIR", "data/hawser", "", func(c *Config) any { return c.StateDir }, filepath.Join(dir, "data/hawser")},
		{"HAWSER_STATE_DIR", "/var/lib/hawser/", "", func(c *Config) any { return c.StateDir }, "/var/lib/hawser"},
		{"HAWSER_STATE_DIR", "", "empty", nil, nil},
		{"HAWSER_ADMIN_ADDR", ":9180", "", func(c *Config) any { return c.AdminAddr }, ":9180"},
		{"HAWSER_ADMIN_ADDR", "[::1]:0", "", func(c *Config) any { return c.AdminAddr }, "[::1]:0"},
		{"HAWSER_ADMIN_ADDR", "9180", "not host:port", nil, nil},
		{"HAWSER_ADMIN_ADDR", "localhost:admin", "port must be a number", nil, nil},
		{"HAWSER_ADMIN_ADDR", "127.0.0.1:65536", "port must be a number", nil, nil},
		{"HAWSER_API_TOKEN", "0123456789abcdef0123", "", func(c *Config) any { return c.APIToken.Reveal() }, "0123456789abcdef0123"},
		{"HAWSER_API_TOKEN", "short", "at least 16 characters", nil, nil},
		{"HAWSER_WEBHOOK_SECRET", "s3cret-s3cret-s3cret", "", func(c *Config) any { return c.WebhookSecret.Reveal() }, "s3cret-s3cret-s3cret"},
		{"HAWSER_WEBHOOK_SECRET", "abc", "at least 16 characters", nil, nil},
		{"HAWSER_ADMIN_URL", "https://ops.example.com:9443/", "", func(c *Config) any { return c.AdminURL }, "https://ops.example.com:9443"},
		{"HAWSER_ADMIN_URL", "ops.example.com", "not an http:// or https:// URL", nil, nil},
		{"HAWSER_ADMIN_HOST", "Hawser.Example.COM.", "", func(c *Config) any { return c.AdminHost }, "hawser.example.com"},
		{"HAWSER_ADMIN_HOST", "bad host", "not a DNS name", nil, nil},
		{"HAWSER_LOG_FORMAT", "json", "", func(c *Config) any { return c.LogFormat }, "json"},
		{"HAWSER_LOG_FORMAT", "xml", "must be text or json", nil, nil},
		{"HAWSER_LOG_LEVEL", "debug", "", func(c *Config) any { return c.LogLevel }, slog.LevelDebug},
		{"HAWSER_LOG_LEVEL", "WARN", "", func(c *Config) any { return c.LogLevel }, slog.LevelWarn},
		{"HAWSER_LOG_LEVEL", "error", "", func(c *Config) any { return c.LogLevel }, slog.LevelError},
		{"HAWSER_LOG_LEVEL", "verbose", "must be debug, info, warn or error", nil, nil},
		{"HAWSER_GIT_TOKEN", "ghp_x y'z", "", func(c *Config) any { return c.GitToken.Reveal() }, "ghp_x y'z"},
		{"HAWSER_GIT_SSH_KEY", "key", "", func(c *Config) any { return c.GitSSHKey }, filepath.Join(dir, "key")},
		{"HAWSER_GIT_SSH_KEY", "", "", func(c *Config) any { return c.GitSSHKey }, ""},
		{"HAWSER_GIT_SSH_KEY", "id_missing", "no such file or directory", nil, nil},
		{"HAWSER_GIT_SSH_KEY", "app", "not a regular file", nil, nil},
		{"HAWSER_GIT_KNOWN_HOSTS", filepath.Join(dir, "key"), "", func(c *Config) any { return c.GitKnownHosts }, filepath.Join(dir, "key")},
		{"HAWSER_GIT_KNOWN_HOSTS", "known_hosts", "no such file or directory", nil, nil},
		{"HAWSER_DOMAIN", "Shop.Example.COM.", "", func(c *Config) any { return c.Domain }, "shop.example.com"},
		{"HAWSER_DOMAIN", "", "", func(c *Config) any { return c.Domain }, ""},
		{"HAWSER_DOMAIN", "shop_example.com", "not a DNS name", nil, nil},
		{"HAWSER_DOMAIN", "-shop.example.com", "not a DNS name", nil, nil},
		{"HAWSER_PRIMARY_SERVICE", "web", "", func(c *Config) any { return c.PrimaryService }, "web"},
		{"HAWSER_PRIMARY_SERVICE", "web site", "not a compose service name", nil, nil},
		{"HAWSER_HTTP_ADDR", ":80", "", func(c *Config) any { return c.HTTPAddr }, ":80"},
		{"HAWSER_HTTP_ADDR", "80", "not host:port", nil, nil},
		{"HAWSER_HTTPS_ADDR", "0.0.0.0:8443", "", func(c *Config) any { return c.HTTPSAddr }, "0.0.0.0:8443"},
		{"HAWSER_HTTPS_ADDR", "", "empty", nil, nil},
		{"HAWSER_UPSTREAM_NETWORK", "hawser_front", "", func(c *Config) any { return c.UpstreamNetwork }, "hawser_front"},
		{"HAWSER_UPSTREAM_NETWORK", "front end", "not a Docker network name", nil, nil},
		{"HAWSER_ACME_EMAIL", "ops@example.com", "", func(c *Config) any { return c.ACMEEmail }, "ops@example.com"},
		{"HAWSER_ACME_EMAIL", "ops", "not an e-mail address", nil, nil},
		{"HAWSER_ACME_CA", "https://acme-staging-v02.api.letsencrypt.org/directory", "", func(c *Config) any { return c.ACMECA }, "https://acme-staging-v02.api.letsencrypt.org/directory"},
		{"HAWSER_ACME_CA", "http://ca.example.com/dir", "not an https:// URL", nil, nil},
		{"HAWSER_DRAIN_TIMEOUT", "5s", "", func(c *Config) any { return c.DrainTimeout }, 5 * time.Second},
		{"HAWSER_DRAIN_TIMEOUT", "soon", "not a duration", nil, nil},
		{"HAWSER_PREVIEW_BRANCHES", "feat/*, fix-*", "", func(c *Config) any { return strings.Join(c.PreviewBranches, "|") }, "feat/*|fix-*"},
		{"HAWSER_PREVIEW_BRANCHES", "feat/[", "bad glob", nil, nil},
		{"HAWSER_PREVIEW_DOMAIN", "Preview.Example.com", "", func(c *Config) any { return c.PreviewDomain }, "preview.example.com"},
		{"HAWSER_PREVIEW_DOMAIN", "pre view", "not a DNS name", nil, nil},
		{"HAWSER_PREVIEW_INHERIT", "PUBLIC_*, SENTRY_DSN", "", func(c *Config) any { return strings.Join(c.PreviewInherit, "|") }, "PUBLIC_*|SENTRY_DSN"},
		{"HAWSER_PREVIEW_INHERIT", "A[", "syntax error in pattern", nil, nil},
		{"HAWSER_PREVIEW_IDLE", "0", "", func(c *Config) any { return c.PreviewIdle }, time.Duration(0)},
		{"HAWSER_PREVIEW_IDLE", "10m", "", func(c *Config) any { return c.PreviewIdle }, 10 * time.Minute},
		{"HAWSER_PREVIEW_IDLE", "ten", "not a duration", nil, nil},
		{"HAWSER_PREVIEW_TTL", "72h", "", func(c *Config) any { return c.PreviewTTL }, 72 * time.Hour},
		{"HAWSER_PREVIEW_TTL", "2w", "not a duration", nil, nil},
		{"HAWSER_PREVIEW_MAX_RUNNING", "3", "", func(c *Config) any { return c.PreviewMaxRunning }, 3},
		{"HAWSER_PREVIEW_MAX_RUNNING", "-1", "not a number of previews", nil, nil},
		{"HAWSER_WAKE_TIMEOUT", "30s", "", func(c *Config) any { return c.WakeTimeout }, 30 * time.Second},
		{"HAWSER_WAKE_TIMEOUT", "0s", "must be more than 0", nil, nil},
		{"HAWSER_PREVIEW_AUTH", "review:$2a$04$ibALDZ2Wtt02dRbZEbfqiujS4R92iJT38bXFCs0lpIrGuNlu7gJeG", "", func(c *Config) any { return c.PreviewAuth != nil }, true},
		{"HAWSER_PREVIEW_AUTH", "review:plaintext", "htpasswd", nil, nil},
		{"HAWSER_MAX_BUILDS", "4", "", func(c *Config) any { return c.MaxBuilds }, 4},
		{"HAWSER_MAX_BUILDS", "0", "at least 1", nil, nil},
		{"HAWSER_PREVIEW_CPUS", "0.5", "", func(c *Config) any { return c.PreviewCPUs }, 0.5},
		{"HAWSER_PREVIEW_CPUS", "-1", "not a number of CPUs", nil, nil},
		{"HAWSER_PREVIEW_MEMORY", "512m", "", func(c *Config) any { return c.PreviewMemory }, int64(512 << 20)},
		{"HAWSER_PREVIEW_MEMORY", "lots", "not a size", nil, nil},
		{"HAWSER_REGISTRY_SCHEDULE", "", "", func(c *Config) any { return c.RegistrySchedule == nil }, true},
		{"HAWSER_REGISTRY_SCHEDULE", "@every 5m", "", func(c *Config) any { return c.RegistrySchedule != nil }, true},
		{"HAWSER_REGISTRY_SCHEDULE", "every five", "invalid schedule", nil, nil},
		{"HAWSER_REGISTRY_AUTH", "ghcr.io=bot:s3cret", "", func(c *Config) any { return c.RegistryAuth["ghcr.io"].Username }, "bot"},
		{"HAWSER_REGISTRY_AUTH", "ghcr.io", "HAWSER_REGISTRY_AUTH", nil, nil},
		{"HAWSER_INSECURE_REGISTRIES", "registry.lan:5000, other.lan", "", func(c *Config) any { return strings.Join(c.InsecureRegistries, "|") }, "registry.lan:5000|other.lan"},
		{"HAWSER_INSECURE_REGISTRIES", "http://registry.lan", "without scheme", nil, nil},
		{"HAWSER_PRUNE_IMAGES", "false", "", func(c *Config) any { return c.PruneImages }, false},
		{"HAWSER_PRUNE_IMAGES", "maybe", "not true or false", nil, nil},
		{"HAWSER_SELF_UPDATE", "false", "", func(c *Config) any { return c.SelfUpdate }, false},
		{"HAWSER_SELF_UPDATE", "off", "not true or false", nil, nil},
		{"HAWSER_KEEP_CHECKOUTS", "1", "", func(c *Config) any { return c.KeepCheckouts }, 1},
		{"HAWSER_KEEP_CHECKOUTS", "0", "at least 1", nil, nil},
		{"HAWSER_KEEP_CHECKOUTS", "five", "whole number", nil, nil},
		{"HAWSER_HEALTH_TIMEOUT", "2m", "", func(c *Config) any { return c.HealthTimeout }, 2 * time.Minute},
		{"HAWSER_HEALTH_TIMEOUT", "0s", "more than 0", nil, nil},
		{"HAWSER_HEALTH_TIMEOUT", "soon", "not a duration", nil, nil},
	}
}

func TestEachKeyIsValidated(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("not really a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := keyCases(dir)
	for _, tc := range cases {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			// The key is on line 3, after a comment and a project key.
			body := "# deployment of the shop\nDB_HOST=db\n" + tc.key + "=" + quote(tc.value) + "\n"
			cfg, err := parseIn(t, dir, body)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got: %v", err)
				}
				if tc.check != nil && tc.check(cfg) != tc.want {
					t.Errorf("got %v, want %v", tc.check(cfg), tc.want)
				}
				return
			}
			es := problems(t, err)
			if len(es) != 1 {
				t.Fatalf("want one problem, got %d: %v", len(es), err)
			}
			e := es[0]
			if e.File != filepath.Join(dir, ".env") || e.Line != 3 || e.Key != tc.key || !strings.Contains(e.Msg, tc.wantErr) {
				t.Errorf("got %q (line %d, key %s), want a problem on line 3 with %s containing %q", e.Error(), e.Line, e.Key, tc.key, tc.wantErr)
			}
		})
	}
	// Adding a key to the table without validation cases fails here.
	for _, k := range Keys() {
		if !slices.ContainsFunc(cases, func(c keyCase) bool { return c.key == k.Name }) {
			t.Errorf("no validation case for %s", k.Name)
		}
	}
}

// quote writes v so that dotenv reads it back unchanged.
func quote(v string) string {
	if strings.ContainsAny(v, " '#$\"") {
		return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
	}
	return v
}

func TestProjectNameIsDerivedFromPathOrRepository(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "My.Shop")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ body, want string }{
		{"HAWSER_PATH=deploy/Web-Front\n", "web-front"},
		{"HAWSER_PATH=.\nHAWSER_REPO=My.Shop\n", "myshop"},
		{"HAWSER_PATH=\nHAWSER_REPO=My.Shop\n", "myshop"},
		{"HAWSER_PATH=.\nHAWSER_REPO=https://git.example.com/team/Shop_API.git\n", "shop_api"},
		{"HAWSER_PATH=.\nHAWSER_REPO=git@git.example.com:team/shop.git\n", "shop"},
		{"HAWSER_PATH=.\nHAWSER_REPO=https://git.example.com/team/shop/\n", "shop"},
		{"HAWSER_PATH=_stack\nHAWSER_PROJECT=explicit\n", "explicit"},
	}
	for _, tc := range cases {
		cfg, err := parseIn(t, dir, tc.body)
		if err != nil {
			t.Errorf("%q: %v", tc.body, err)
			continue
		}
		if cfg.Project != tc.want {
			t.Errorf("%q: project %q, want %q", tc.body, cfg.Project, tc.want)
		}
		if !strings.Contains(cfg.Redacted(), "HAWSER_PROJECT="+tc.want+"\n") {
			t.Errorf("%q: Redacted does not show the derived project:\n%s", tc.body, cfg.Redacted())
		}
	}
}

func TestUnderivableProjectNameAsksForHawserProject(t *testing.T) {
	_, err := parseIn(t, t.TempDir(), "HAWSER_PATH=stacks/___\n")
	es := problems(t, err)
	if len(es) != 1 || es[0].Key != "HAWSER_PROJECT" || !strings.Contains(es[0].Msg, "set HAWSER_PROJECT") {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownKeyNamesFileLineAndNearestKey(t *testing.T) {
	dir := t.TempDir()
	body := "# poll often\nDB_HOST=db\n\nHAWSER_SCHEDUL=@every 10s\nhawser_log_level=debug\nHAWSER_FROBNICATE=yes\n"
	_, err := parseIn(t, dir, body)
	es := problems(t, err)
	file := filepath.Join(dir, ".env")
	want := []string{
		file + ":4: HAWSER_SCHEDUL: unknown key; did you mean HAWSER_SCHEDULE?",
		file + ":5: hawser_log_level: unknown key; did you mean HAWSER_LOG_LEVEL?",
		file + ":6: HAWSER_FROBNICATE: unknown key",
	}
	if len(es) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(es), len(want), err)
	}
	for i := range want {
		if es[i].Error() != want[i] {
			t.Errorf("problem %d:\n got %s\nwant %s", i, es[i].Error(), want[i])
		}
	}
}

func TestAllProblemsAreCollectedWithTheirLines(t *testing.T) {
	dir := t.TempDir()
	body := strings.Join([]string{
		"HAWSER_LOG_LEVEL=loud",    // 1
		`NOTE="spans`,              // 2
		`two lines"`,               // 3
		"HAWSER_KEEP_CHECKOUTS=-1", // 4
		"HAWSER_PATH=../up",        // 5
		"HAWSER_ADMIN_ADDR=9180",   // 6
		"HAWSER_ADMIN_ADDR=:9180",  // 7: the last assignment wins
		"HAWSER_HEALTH_TIMEOUT=1",  // 8
		"HAWSER_HEALTH_TIMEOUT=0s", // 9: and is the one reported
		"export HAWSER_BOGUS=1",    // 10
	}, "\n")
	_, err := parseIn(t, dir, body)
	es := problems(t, err)
	type at struct {
		line int
		key  string
	}
	var got []at
	for _, e := range es {
		got = append(got, at{e.Line, e.Key})
	}
	want := []at{{1, "HAWSER_LOG_LEVEL"}, {4, "HAWSER_KEEP_CHECKOUTS"}, {5, "HAWSER_PATH"}, {9, "HAWSER_HEALTH_TIMEOUT"}, {10, "HAWSER_BOGUS"}}
	if !slices.Equal(got, want) {
		t.Errorf("got problems at %v, want %v\n%v", got, want, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", n, err)
	}
}

func TestSyntaxErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, ".env")
	cases := []struct {
		body string
		want string
	}{
		{"A=1\nB=\"open\nC=2\n\nD=4\n", file + ":2: unterminated quoted value"},
		{"A=1\n\nmy$key=3\n", file + `:3: unexpected character "$" in a variable name`},
		{"A=1\nsome key=2\n", file + ":2: key cannot contain a space"},
		{"A=1\nB=${UNSET:?set it}\n", file + ":2: required variable UNSET is missing a value"},
		{"A=1\nB=x\nC=pre${\n", file + ":3: invalid ${...} variable reference"},
	}
	for _, tc := range cases {
		_, err := parseIn(t, dir, tc.body)
		es := problems(t, err)
		if len(es) != 1 || es[0].Error() != tc.want {
			t.Errorf("%q:\n got %v\nwant %s", tc.body, err, tc.want)
		}
	}
}

func TestSecretsNeverAppearInErrors(t *testing.T) {
	const secret = "hunter2-s3cret"
	dir := t.TempDir()
	bodies := []string{
		"HAWSER_GIT_TOKEN=" + secret + "\nHAWSER_LOG_LEVEL=loud\n",
		"HAWSER_GIT_TOKN=" + secret + "\n",
		"DB_PASSWORD=\"" + secret + "\n",
		"DB_PASSWORD='" + secret + "\nOTHER=1\n",
		"DB_PASSWORD=${" + secret + "\n",
		"DB$PASSWORD=" + secret + "\n",
		"DB_PASSWORD=${MISSING:?" + secret + "}\n",
		"DB_PASSWORD=" + secret + "\nX=${MISSING:?$DB_PASSWORD}\n",
		"HAWSER_REPO=https://bot:" + secret + "@git.example.com/shop.git\n",
		"HAWSER_REPO=https://bot:" + secret + "@git.example.com:bad port/shop.git\n",
	}
	for _, body := range bodies {
		_, err := parseIn(t, dir, body)
		if err == nil {
			t.Errorf("%q: want an error", body)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q: the error shows the secret: %v", body, err)
		}
	}
}

func TestSecretsAreMaskedWhenPrinted(t *testing.T) {
	const token, password = "tok-hunter2", "pw-hunter3"
	dir := t.TempDir()
	cfg, err := parseIn(t, dir, "HAWSER_GIT_TOKEN="+token+"\nDB_PASSWORD="+password+"\nEMPTY=\n")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logged, nil))
	logger.Info("config", "config", cfg, "token", cfg.GitToken, "env", cfg.Env)
	logger.Info("config", "config", *cfg)
	outputs := map[string]string{
		"Redacted": cfg.Redacted(),
		"log":      logged.String(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outputs[verb+" *Config"] = sprintf(verb, cfg)
		outputs[verb+" Config"] = sprintf(verb, *cfg)
		outputs[verb+" Env"] = sprintf(verb, cfg.Env)
		outputs[verb+" Secret"] = sprintf(verb, cfg.GitToken)
	}
	outputs["json"] = marshalJSON(t, cfg)
	for name, out := range outputs {
		if strings.Contains(out, token) || strings.Contains(out, password) {
			t.Errorf("%s shows a secret: %s", name, out)
		}
	}
	for _, line := range []string{"HAWSER_GIT_TOKEN=***\n", "DB_PASSWORD=***\n", "EMPTY=\n", "HAWSER_LOG_LEVEL=info\n"} {
		if !strings.Contains(cfg.Redacted(), line) {
			t.Errorf("Redacted lacks %q:\n%s", line, cfg.Redacted())
		}
	}
	if !strings.Contains(logged.String(), `"DB_PASSWORD":"***"`) {
		t.Errorf("the log does not show the key with its value masked: %s", logged.String())
	}
}

func TestProjectKeysPassThroughWithExpansionWithinTheFile(t *testing.T) {
	dir := t.TempDir()
	body := "DB_USER=shop\nDB_URL=postgres://${DB_USER}@db/${DB_NAME:-shop}\nexport GREETING='hi #1'\nHAWSER_BRANCH=main\nUSES_HAWSER=${HAWSER_BRANCH}\n"
	cfg, err := parseIn(t, dir, body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"DB_USER":     "shop",
		"DB_URL":      "postgres://shop@db/shop",
		"GREETING":    "hi #1",
		"USES_HAWSER": "main",
	}
	if len(cfg.Env) != len(want) {
		t.Errorf("Env has %d keys, want %d: %v", len(cfg.Env), len(want), cfg.Env)
	}
	for k, v := range want {
		if cfg.Env[k] != v {
			t.Errorf("Env[%s] = %q, want %q", k, cfg.Env[k], v)
		}
	}
	var plain map[string]string = cfg.Env // compose-go takes a plain map
	if plain["DB_USER"] != "shop" {
		t.Error("Env does not convert to map[string]string")
	}
}

func TestProcessEnvironmentDoesNotLeakIn(t *testing.T) {
	t.Setenv("HAWSER_BRANCH", "from-process")
	t.Setenv("LEAKED", "from-process")
	dir := t.TempDir()
	cfg, err := parseIn(t, dir, "A=${LEAKED}\nB=${LEAKED:-default}\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Branch != "" || cfg.Env["A"] != "" || cfg.Env["B"] != "default" {
		t.Errorf("process environment leaked in: branch %q, A %q, B %q", cfg.Branch, cfg.Env["A"], cfg.Env["B"])
	}
	// A key without a value would take it from the environment in docker
	// compose; here that is an error rather than a silent empty value.
	_, err = parseIn(t, dir, "A=1\nLEAKED\n")
	es := problems(t, err)
	if len(es) != 1 || es[0].Line != 2 || es[0].Key != "LEAKED" || !strings.Contains(es[0].Msg, "process environment") {
		t.Errorf("got %v", err)
	}
}

func TestLoadResolvesAgainstTheFilesDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "host.env")
	if err := os.WriteFile(file, []byte("HAWSER_STATE_DIR=var\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // the working directory must not matter
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Repo != dir || cfg.StateDir != filepath.Join(dir, "var") || cfg.File != file {
		t.Errorf("repo %q, state dir %q, file %q; want them in %s", cfg.Repo, cfg.StateDir, cfg.File, dir)
	}
}

func TestLoadNamesAMissingFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), ".env")
	_, err := Load(file)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("want fs.ErrNotExist, got %v", err)
	}
	es := problems(t, err)
	if len(es) != 1 || es[0].Error() != file+": cannot read: no such file or directory" {
		t.Errorf("got %v", err)
	}
}

func TestParseWithoutDirUsesTheFilesDirectory(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(filepath.Join(dir, ".env"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != dir || cfg.Repo != dir {
		t.Errorf("dir %q, repo %q, want %s", cfg.Dir, cfg.Repo, dir)
	}
}

func TestSuggestionsOnlyForCloseKeys(t *testing.T) {
	known := []string{"HAWSER_SCHEDULE", "HAWSER_SCHEDULE_JITTER", "HAWSER_PATH", "HAWSER_REPO"}
	cases := map[string]string{
		"HAWSER_SCHEDUL":        "HAWSER_SCHEDULE",
		"HAWSER_SHCEDULE":       "HAWSER_SCHEDULE",
		"HAWSER_SCHEDULE_JITER": "HAWSER_SCHEDULE_JITTER",
		"hawser_path":           "HAWSER_PATH",
		"HAWSER_REPOS":          "HAWSER_REPO",
		"HAWSER_X":              "",
		"HAWSER_TIMEOUT":        "",
	}
	for key, want := range cases {
		if got := suggest(key, known); got != want {
			t.Errorf("suggest(%s) = %q, want %q", key, got, want)
		}
	}
}

func sprintf(format string, v any) string { return fmt.Sprintf(format, v) }

func marshalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
