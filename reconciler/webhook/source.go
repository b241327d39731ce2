package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// Endpoints: the last element of a webhook's path, Event.Provider and the
// provider label of hawser_webhooks_total.
const (
	GitHub  = "github"
	GitLab  = "gitlab"
	Gitea   = "gitea" // also Forgejo and Gogs
	Generic = "generic"
)

// source is what one request's headers say about its sender, and how to
// check them.
type source struct {
	provider string
	// host names the sender's product in messages; empty for Generic,
	// which has no event header to complain about.
	host string
	// authHeader carries the signature or token; verify checks its value.
	authHeader string
	auth       string
	verify     func(secret []byte, auth string, body []byte) bool
	// fix tells the user how to make the secrets agree.
	fix string
	// challenge is the WWW-Authenticate of a 401, for schemes that have one.
	challenge string
	// eventHeader names the event; empty when every request is a push.
	eventHeader string
	event       string
	events      map[string]kind
	// eventFix tells the user how to send only the events hawser reads.
	eventFix       string
	deliveryHeader string
	delivery       string
}

// lookup describes a request to the endpoint name.
func lookup(name string, h http.Header) (source, bool) {
	var s source
	switch name {
	case GitHub:
		s = github()
	case GitLab:
		s = gitlab()
	case Gitea:
		s = giteaFamily(h)
	case Generic:
		s = generic()
	default:
		return source{}, false
	}
	s.auth = h.Get(s.authHeader)
	if s.eventHeader != "" {
		s.event = h.Get(s.eventHeader)
	}
	s.delivery = h.Get(s.deliveryHeader)
	return s, true
}

func github() source {
	return source{
		provider: GitHub, host: "GitHub",
		authHeader: "X-Hub-Signature-256", verify: signedBody("sha256="),
		fix:            "check that the webhook's secret on GitHub equals HAWSER_WEBHOOK_SECRET",
		eventHeader:    "X-GitHub-Event",
		events:         map[string]kind{"push": kindPush, "delete": kindDelete, "ping": kindPing},
		eventFix:       `in the webhook's settings on GitHub choose "Just the push event"`,
		deliveryHeader: "X-GitHub-Delivery",
	}
}

// gitlab describes GitLab, whose tag pushes are pushes of refs/tags/...
func gitlab() source {
	return source{
		provider: GitLab, host: "GitLab",
		authHeader: "X-Gitlab-Token", verify: sameToken,
		fix:            "check that the webhook's secret token in GitLab equals HAWSER_WEBHOOK_SECRET",
		eventHeader:    "X-Gitlab-Event",
		events:         map[string]kind{"Push Hook": kindPush, "Tag Push Hook": kindPush},
		eventFix:       `in the webhook's settings in GitLab select only "Push events"`,
		deliveryHeader: "X-Gitlab-Event-UUID",
	}
}

func generic() source {
	return source{
		provider:   Generic,
		authHeader: "Authorization", verify: bearer,
		fix:            "send Authorization: Bearer followed by HAWSER_WEBHOOK_SECRET",
		challenge:      `Bearer realm="hawser webhook"`,
		deliveryHeader: "X-Hawser-Delivery",
	}
}

// giteaFamily describes Gitea, Forgejo and Gogs, which share one format
// under their own header names (Forgejo and Gitea send Gitea's too).
func giteaFamily(h http.Header) source {
	product, signed := "Gitea", false
	for _, p := range []string{"Forgejo", "Gitea", "Gogs"} {
		if h.Get("X-"+p+"-Signature") != "" {
			product, signed = p, true
			break
		}
	}
	s := source{
		provider: Gitea, host: product,
		authHeader: "X-" + product + "-Signature", verify: signedBody(""),
		fix:            "check that the webhook's secret in " + product + " equals HAWSER_WEBHOOK_SECRET",
		eventHeader:    "X-" + product + "-Event",
		events:         map[string]kind{"push": kindPush, "delete": kindDelete},
		eventFix:       "in the webhook's settings in " + product + ` choose the "Push" event, and "Delete" to tear down previews of deleted branches at once`,
		deliveryHeader: "X-" + product + "-Delivery",
	}
	if !signed {
		// No signature header is present, so the lookup by this name
		// finds nothing either, and the message names all three.
		s.host = "Gitea, Forgejo or Gogs"
		s.authHeader = "X-Gitea-Signature, X-Forgejo-Signature or X-Gogs-Signature"
		s.fix = "set the webhook's secret in Gitea, Forgejo or Gogs to HAWSER_WEBHOOK_SECRET"
	}
	return s
}

// authenticate refuses a request whose signature or token does not prove
// that its sender knows the secret.
func (s source) authenticate(secret, body []byte) *reply {
	switch {
	case s.auth == "":
		return &reply{http.StatusUnauthorized, resultUnauthorized, fmt.Sprintf("missing %s header: %s", s.authHeader, s.fix)}
	case !s.verify(secret, s.auth, body):
		return &reply{http.StatusUnauthorized, resultUnauthorized, fmt.Sprintf("%s does not match: %s", s.authHeader, s.fix)}
	}
	return nil
}

// kind tells which event the request carries, or refuses one hawser does
// not read.
func (s source) kind() (kind, *reply) {
	if s.eventHeader == "" {
		return kindPush, nil
	}
	if s.event == "" {
		return 0, &reply{http.StatusBadRequest, resultMalformed, fmt.Sprintf("missing %s header: is this a webhook of %s? Other senders use /webhook/generic", s.eventHeader, s.host)}
	}
	k, ok := s.events[s.event]
	if !ok {
		return 0, &reply{http.StatusBadRequest, resultMalformed, fmt.Sprintf("%s %.64q is not an event hawser reads: %s", s.eventHeader, s.event, s.eventFix)}
	}
	return k, nil
}

// signedBody checks a hex HMAC-SHA256 of the body after prefix.
func signedBody(prefix string) func(secret []byte, auth string, body []byte) bool {
	return func(secret []byte, auth string, body []byte) bool {
		digits, ok := strings.CutPrefix(auth, prefix)
		if !ok {
			return false
		}
		sig, err := hex.DecodeString(digits)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		return hmac.Equal(sig, mac.Sum(nil))
	}
}

// sameToken compares digests of the token and the secret, so that the time
// taken does not reveal even the secret's length.
func sameToken(secret []byte, token string, _ []byte) bool {
	a, b := sha256.Sum256(secret), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// bearer checks an Authorization: Bearer <secret> header.
func bearer(secret []byte, auth string, body []byte) bool {
	scheme, token, ok := strings.Cut(auth, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && sameToken(secret, token, body)
}
