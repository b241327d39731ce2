package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// hashAdvice tells how to make the value ParseBasicAuth wants without
// hawser: htpasswd is in Debian's apache2-utils.
const hashAdvice = "hash the password with `htpasswd -nbB <user> '<password>'` " +
	"(Debian package apache2-utils) and use the line it prints, in single quotes in .env so that its $ signs are not expanded"

// verifiedCacheSize bounds the credentials remembered as verified: a few
// reviewers with a browser each, not a store an attacker could grow.
const verifiedCacheSize = 64

// pageUnauthorized asks for the preview's credentials.
var pageUnauthorized = newPage(http.StatusUnauthorized, "This preview is protected. Sign in with the user name and password you were given.")

// BasicAuth guards routes with HTTP basic authentication (RFC 7617) for one
// user whose password is known only as a bcrypt hash. Parse it once and set
// the same value on every route it guards, across tables: it remembers
// verified credentials, so a browser's many requests cost one bcrypt.
type BasicAuth struct {
	user       string
	userDigest [sha256.Size]byte
	hash       []byte
	// compare is bcrypt.CompareHashAndPassword; tests count its calls.
	compare func(hash, password []byte) error
	// cacheKey is random per value, so the digests in verified are of no
	// use to anyone reading this process's memory without it.
	cacheKey []byte

	mu       sync.Mutex
	verified map[[sha256.Size]byte]struct{}
}

// ParseBasicAuth reads HAWSER_PREVIEW_AUTH: `user:<bcrypt hash>`, as
// `htpasswd -nB user` prints it ($2a$, $2b$ or $2y$). A plain-text password
// is refused. Errors never repeat the value.
func ParseBasicAuth(v string) (*BasicAuth, error) {
	user, hash, found := strings.Cut(strings.TrimSpace(v), ":")
	if !found {
		return nil, errors.New("basic auth: want user:bcrypt-hash; " + hashAdvice)
	}
	if user == "" {
		return nil, errors.New("basic auth: the user name is empty")
	}
	if strings.ContainsFunc(user, unicode.IsControl) {
		return nil, errors.New("basic auth: the user name has control characters")
	}
	if err := checkBcryptHash(hash); err != nil {
		return nil, err
	}
	a := &BasicAuth{
		user:       user,
		userDigest: sha256.Sum256([]byte(user)),
		hash:       []byte(hash),
		compare:    bcrypt.CompareHashAndPassword,
		cacheKey:   make([]byte, 32),
		verified:   make(map[[sha256.Size]byte]struct{}, verifiedCacheSize),
	}
	// crypto/rand.Read never fails; it crashes the program if it could.
	rand.Read(a.cacheKey)
	return a, nil
}

// checkBcryptHash accepts a bcrypt hash in the modular crypt format and
// tells a plain-text password or another htpasswd scheme apart from a
// damaged hash, without quoting either.
func checkBcryptHash(hash string) error {
	switch {
	case hash == "":
		return errors.New("basic auth: the password hash is empty; " + hashAdvice)
	case !strings.HasPrefix(hash, "$") && !strings.HasPrefix(hash, "{"):
		return errors.New("basic auth: the password is in plain text; " + hashAdvice)
	case !strings.HasPrefix(hash, "$2"):
		return errors.New("basic auth: the password hash is not bcrypt (htpasswd without -B makes MD5 or SHA-1); " + hashAdvice)
	}
	prefixOK := strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
	if _, err := bcrypt.Cost([]byte(hash)); err != nil || !prefixOK || len(hash) != 60 || !bcryptAlphabet(hash[7:]) {
		return errors.New("basic auth: the bcrypt hash is malformed (want $2y$, $2b$ or $2a$, a cost and 53 characters); " + hashAdvice)
	}
	return nil
}

// bcryptAlphabet reports whether s uses only bcrypt's base64 characters: a
// bad salt would otherwise only show as every sign-in failing.
func bcryptAlphabet(s string) bool {
	for _, c := range s {
		if c != '.' && c != '/' && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// String names the user and never the hash, so printing a BasicAuth (in a
// log or an error) leaks nothing.
func (a *BasicAuth) String() string {
	return "basic auth for user " + a.user
}

// guard answers 401 unless r carries the user and password; it returns r
// without its Authorization header when it lets r through, because the
// preview's code (any branch, anyone's) must not see the reviewers'
// password.
func (a *BasicAuth) guard(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if !a.allows(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="preview", charset="UTF-8"`)
		writePage(w, r, pageUnauthorized)
		return nil, false
	}
	// A copy: a handler must not change the request it was given.
	r = r.Clone(r.Context())
	r.Header.Del("Authorization")
	return r, true
}

// allows reports whether r carries the user and password. The user name is
// compared in constant time and bcrypt runs whatever the user name, so the
// time taken tells nothing about it; only successes are remembered.
func (a *BasicAuth) allows(r *http.Request) bool {
	user, password, ok := r.BasicAuth()
	if !ok {
		return false
	}
	key := a.digest(user, password)
	if a.known(key) {
		return true
	}
	userDigest := sha256.Sum256([]byte(user))
	userOK := subtle.ConstantTimeCompare(userDigest[:], a.userDigest[:]) == 1
	passwordOK := a.compare(a.hash, []byte(password)) == nil
	if !userOK || !passwordOK {
		return false
	}
	a.remember(key)
	return true
}

// digest is the cache key of a pair of credentials. A user name has no
// ':' (RFC 7617), so user:password is unambiguous.
func (a *BasicAuth) digest(user, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, a.cacheKey)
	m.Write([]byte(user + ":" + password))
	var d [sha256.Size]byte
	m.Sum(d[:0])
	return d
}

func (a *BasicAuth) known(key [sha256.Size]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.verified[key]
	return ok
}

// remember adds key, dropping an arbitrary entry when the cache is full.
// Only credentials that passed bcrypt get here, so the bound matters little
// (bcrypt ignores bytes past the 72nd, the one way to vary a right
// password), but it keeps memory fixed whatever clients send.
func (a *BasicAuth) remember(key [sha256.Size]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.verified) >= verifiedCacheSize {
		for k := range a.verified {
			delete(a.verified, k)
			break
		}
	}
	a.verified[key] = struct{}{}
}
