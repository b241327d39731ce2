package proxy

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const (
	authUser      = "review"
	authPassword  = "s3cret pass"
	wantChallenge = `Basic realm="preview", charset="UTF-8"`
)

// htpasswdLine is what `htpasswd -nbB review 's3cret pass'` prints, at the
// cheapest cost and with the given bcrypt variant ("2a", "2b" or "2y": the
// same algorithm, htpasswd writes 2y).
func htpasswdLine(t testing.TB, variant string) (line, hash string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(authPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash = "$" + variant + string(h[3:])
	return authUser + ":" + hash + "\n", hash
}

// countingAuth parses an htpasswd line and counts the bcrypt comparisons
// made with it.
func countingAuth(t testing.TB) (*BasicAuth, *atomic.Int64) {
	t.Helper()
	line, _ := htpasswdLine(t, "2y")
	a, err := ParseBasicAuth(line)
	if err != nil {
		t.Fatalf("ParseBasicAuth: %v", err)
	}
	var calls atomic.Int64
	a.compare = func(hash, password []byte) error {
		calls.Add(1)
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	return a, &calls
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestProtectedPreviewServesOnlyWithCredentialsAndHidesThemFromUpstream(t *testing.T) {
	var seen atomic.Int64
	var sawAuthorization atomic.Value
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		sawAuthorization.Store(r.Header.Get("Authorization"))
		w.Write([]byte("preview"))
	})
	a, _ := countingAuth(t)
	p := newProxy(t, Options{}, Route{Host: "pr-1.localhost", Service: "web", Upstreams: []string{up}, Auth: a})
	front := frontEnd(t, p).URL

	for name, hdr := range map[string][]string{
		"no credentials":     nil,
		"wrong password":     {"Authorization", basic(authUser, "guess")},
		"wrong user":         {"Authorization", basic("admin", authPassword)},
		"not basic":          {"Authorization", "Bearer " + authPassword},
		"browser, no creds":  {"Accept", "text/html"},
		"password as user":   {"Authorization", basic(authPassword, authUser)},
		"empty credentials":  {"Authorization", basic("", "")},
		"user case differs":  {"Authorization", basic("Review", authPassword)},
		"password truncated": {"Authorization", basic(authUser, authPassword[:5])},
	} {
		resp, body := get(t, front, "pr-1.localhost", hdr...)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != wantChallenge {
			t.Errorf("%s: got %d, WWW-Authenticate %q; want 401 with %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), wantChallenge)
		}
		if strings.Contains(body, "preview\n") || strings.Contains(body, authPassword) {
			t.Errorf("%s: body %q leaks the preview or the password", name, body)
		}
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("upstream saw %d unauthenticated requests, want 0", n)
	}

	resp, body := get(t, front, "pr-1.localhost", "Authorization", basic(authUser, authPassword))
	if resp.StatusCode != http.StatusOK || body != "preview" {
		t.Fatalf("right credentials: got %d %q, want 200 %q", resp.StatusCode, body, "preview")
	}
	if got := sawAuthorization.Load(); got != "" {
		t.Fatalf("upstream saw Authorization %q, want it stripped", got)
	}
}

func TestUnauthorizedPageIsHTMLForBrowsersAndTextOtherwise(t *testing.T) {
	a, _ := countingAuth(t)
	p := newProxy(t, Options{}, Route{Host: "pr-1.localhost", Service: "web", Upstreams: []string{says(t, "preview")}, Auth: a})
	front := frontEnd(t, p).URL
	for accept, want := range map[string]string{
		"text/html,application/xhtml+xml,*/*;q=0.8": "text/html",
		"*/*": "text/plain",
	} {
		resp, body := get(t, front, "pr-1.localhost", "Accept", accept)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ct, want) || !strings.Contains(body, "protected") {
			t.Errorf("Accept %q: got %d %q %q, want 401 %s saying it is protected", accept, resp.StatusCode, ct, body, want)
		}
	}
}

func TestSleepingPreviewIsNeitherWokenNorTouchedWithoutCredentials(t *testing.T) {
	var woken, touched atomic.Int64
	var sawAuthorization atomic.Value
	wake := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		woken.Add(1)
		sawAuthorization.Store(r.Header.Get("Authorization"))
		w.Write([]byte("starting"))
	})
	a, _ := countingAuth(t)
	p := newProxy(t, Options{},
		Route{Host: "pr-1.localhost", Service: "web", Handler: wake, Touch: func() { touched.Add(1) }, Auth: a},
		Route{Host: "pr-2.localhost", Service: "web", Unavailable: "A new version is starting.", Auth: a},
	)
	front := frontEnd(t, p).URL

	get(t, front, "pr-1.localhost")
	get(t, front, "pr-1.localhost", "Authorization", basic(authUser, "guess"))
	if woken.Load() != 0 || touched.Load() != 0 {
		t.Fatalf("without credentials: woken %d, touched %d times; want 0 and 0", woken.Load(), touched.Load())
	}
	if resp, _ := get(t, front, "pr-2.localhost"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Unavailable route without credentials: got %d, want 401", resp.StatusCode)
	}

	resp, body := get(t, front, "pr-1.localhost", "Authorization", basic(authUser, authPassword))
	if resp.StatusCode != http.StatusOK || body != "starting" || woken.Load() != 1 || touched.Load() != 1 {
		t.Fatalf("with credentials: got %d %q, woken %d, touched %d; want 200 starting, 1, 1", resp.StatusCode, body, woken.Load(), touched.Load())
	}
	if got := sawAuthorization.Load(); got != "" {
		t.Fatalf("handler saw Authorization %q, want it stripped", got)
	}
}

func TestPlainHTTPRedirectsBeforeAskingForPassword(t *testing.T) {
	a, _ := countingAuth(t)
	p := newProxy(t, Options{}, Route{Host: "pr-1.preview.example.com", Service: "web", Upstreams: []string{says(t, "preview")}, Auth: a})
	toHTTPS := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	}
	w := httptest.NewRecorder()
	p.serve(w, httptest.NewRequest(http.MethodGet, "http://pr-1.preview.example.com/", nil), toHTTPS)
	if w.Code != http.StatusPermanentRedirect || w.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("got %d, WWW-Authenticate %q; want a redirect to HTTPS and no challenge over HTTP", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}

func TestVerifiedCredentialsAreNotCheckedWithBcryptAgain(t *testing.T) {
	a, calls := countingAuth(t)
	p := newProxy(t, Options{}, Route{Host: "pr-1.localhost", Service: "web", Upstreams: []string{says(t, "preview")}, Auth: a})
	front := frontEnd(t, p).URL
	status := func(user, password string) int {
		resp, _ := get(t, front, "pr-1.localhost", "Authorization", basic(user, password))
		return resp.StatusCode
	}

	for i := range 3 {
		if got := status(authUser, authPassword); got != http.StatusOK {
			t.Fatalf("request %d with right credentials: got %d, want 200", i, got)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("3 requests with right credentials ran bcrypt %d times, want 1", n)
	}
	for range 2 {
		if got := status(authUser, "guess"); got != http.StatusUnauthorized {
			t.Fatalf("wrong password: got %d, want 401", got)
		}
	}
	// A wrong user name costs a bcrypt too: otherwise the time taken would
	// tell whether the name was right.
	if got := status("admin", authPassword); got != http.StatusUnauthorized {
		t.Fatalf("wrong user: got %d, want 401", got)
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("after 3 failed attempts bcrypt ran %d times in all, want 4: failures are not cached", n)
	}
}

func TestVerifiedCacheStaysBounded(t *testing.T) {
	a, _ := countingAuth(t)
	a.compare = func(_, _ []byte) error { return nil } // every password right
	for i := range 3 * verifiedCacheSize {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(authUser, fmt.Sprint("password-", i))
		if !a.allows(r) {
			t.Fatalf("request %d refused", i)
		}
	}
	if n := len(a.verified); n != verifiedCacheSize {
		t.Fatalf("cache holds %d entries, want %d", n, verifiedCacheSize)
	}
}

func TestParseBasicAuthAcceptsHtpasswdBcryptVariants(t *testing.T) {
	for _, variant := range []string{"2a", "2b", "2y"} {
		t.Run(variant, func(t *testing.T) {
			line, _ := htpasswdLine(t, variant)
			a, err := ParseBasicAuth(line)
			if err != nil {
				t.Fatalf("ParseBasicAuth: %v", err)
			}
			for password, want := range map[string]bool{authPassword: true, "guess": false, "": false} {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.SetBasicAuth(authUser, password)
				if got := a.allows(r); got != want {
					t.Errorf("password %q: allowed %v, want %v", password, got, want)
				}
			}
		})
	}
}

func TestParseBasicAuthRefusesPlainTextAndMalformedValues(t *testing.T) {
	_, hash := htpasswdLine(t, "2y")
	for _, tc := range []struct {
		name, value, want string
	}{
		{"plain-text password", authUser + ":" + authPassword, "plain text"},
		{"plain text says how to hash", authUser + ":" + authPassword, "htpasswd -nbB"},
		{"plain text names the package", authUser + ":" + authPassword, "apache2-utils"},
		{"no colon", hash, "want user:bcrypt-hash"},
		{"empty user", ":" + hash, "user name is empty"},
		{"control character in user", "re\tview:" + hash, "control characters"},
		{"empty hash", authUser + ":", "empty"},
		{"MD5 from htpasswd without -B", authUser + ":$apr1$q5.BYQ3o$7RBbkZEyINXwQTw2jlOuH/", "not bcrypt"},
		{"SHA-1 from htpasswd -s", authUser + ":{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "not bcrypt"},
		{"hash cut short (unquoted $ expanded in .env)", authUser + ":" + hash[:7], "malformed"},
		{"hash with extra characters", authUser + ":" + hash + "x", "malformed"},
		{"unknown variant", authUser + ":$2x" + hash[3:], "malformed"},
		{"cost out of range", authUser + ":$2y$99" + hash[6:], "malformed"},
		{"character outside bcrypt's alphabet", authUser + ":" + hash[:20] + "!" + hash[21:], "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseBasicAuth(tc.value)
			if err == nil {
				t.Fatalf("accepted %v", a)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			for _, secret := range []string{authPassword, hash[7:], hash[7:29]} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q repeats a secret", msg)
				}
			}
		})
	}
}

func TestBasicAuthPrintsWithoutItsHash(t *testing.T) {
	line, hash := htpasswdLine(t, "2y")
	a, err := ParseBasicAuth(line)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%+v", a), fmt.Sprintf("%v", Route{Auth: a})} {
		if strings.Contains(s, hash[7:]) || !strings.Contains(s, authUser) {
			t.Errorf("printed as %q: want the user and no hash", s)
		}
	}
}

// BenchmarkAuthenticatedRequest measures what a request with right
// credentials costs at htpasswd's default cost, with and without the cache
// of verified credentials.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte(authPassword), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	a, err := ParseBasicAuth(authUser + ":" + string(h))
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(authUser, authPassword)
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if !a.allows(r) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("bcrypt", func(b *testing.B) {
		for b.Loop() {
			clear(a.verified)
			if !a.allows(r) {
				b.Fatal("refused")
			}
		}
	})
}
