// Package webhook receives the push notifications of git hosts, so that a
// push reaches hawser at once instead of at the next poll.
//
// A Receiver serves one endpoint per kind of sender, chosen by the last
// element of the request's path:
//
//	/webhook/github   GitHub. X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>.
//	                  Events (X-GitHub-Event): push, delete, ping. Delivery id: X-GitHub-Delivery.
//	/webhook/gitlab   GitLab. X-Gitlab-Token equal to the secret.
//	                  Events (X-Gitlab-Event): "Push Hook", "Tag Push Hook". Delivery id: X-Gitlab-Event-UUID.
//	/webhook/gitea    Gitea, Forgejo and Gogs. X-Gitea-Signature, X-Forgejo-Signature or
//	                  X-Gogs-Signature: <hex HMAC-SHA256 of the body>, no prefix.
//	                  Events (X-Gitea-Event, ...): push, delete. Delivery id: X-Gitea-Delivery, ...
//	/webhook/generic  Any other sender (a CI job, a script). Authorization: Bearer <secret>.
//	                  Every request is a push. Optional delivery id: X-Hawser-Delivery.
//
// The generic body is a JSON object; only ref is required and other fields
// are ignored:
//
//	{"ref": "refs/heads/main", "after": "<40 or 64 hex digits>", "deleted": false}
//
// A ref is a full ref name (refs/heads/<branch>; tags and other refs are
// acknowledged and ignored) or a bare branch name. A branch is deleted when
// deleted is true or after is all zeros, which is also how GitHub, GitLab and
// the generic format report deletions; Gitea, Forgejo and Gogs send a delete
// event instead, so select it next to push there.
//
// Every endpoint takes POST, Content-Type application/json and a body of at
// most 1 MiB. Every answer has a JSON body {"result": ..., "message": ...},
// the message saying what to change; result is the label counted in
// hawser_webhooks_total{provider,result}:
//
//	202 accepted   a push to a wanted branch; the trigger ran
//	202 ignored    a push to another branch, a tag or another ref
//	200 ignored    GitHub's ping, once its signature is checked
//	401 unauthorized  signature or token missing or wrong
//	400 malformed  body not the JSON expected, unknown or missing event, delivery id over 128 characters
//	405 malformed  not POST
//	415 malformed  not application/json (GitHub's form encoding included)
//	409 replayed   a delivery id acted on in the last 24 hours (1000 at most)
//	413 too_large  body over 1 MiB
//	404 (no result) an unknown endpoint, or any request when no secret is set
//
// A webhook only says "look now": the sender's After commit is for the logs,
// and the reconciler asks the remote itself. The signatures cover the body
// but not the delivery id, so the set of recent delivery ids stops
// redeliveries and duplicates rather than a determined replay; at worst a
// replay causes an early poll.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxBody is the largest body accepted; GitHub caps its payloads at 25 MB,
// but a push of a few commits is a few kilobytes.
const MaxBody = 1 << 20

// Results of one request, the values of hawser_webhooks_total's result label.
const (
	resultAccepted     = "accepted"
	resultIgnored      = "ignored"
	resultUnauthorized = "unauthorized"
	resultMalformed    = "malformed"
	resultReplayed     = "replayed"
	resultTooLarge     = "too_large"
)

// offMessage answers every request when no secret is set.
const offMessage = "webhooks are off: set HAWSER_WEBHOOK_SECRET (at least 16 characters) and restart hawser"

// Options configure a Receiver.
type Options struct {
	// Secret is HAWSER_WEBHOOK_SECRET, already validated; empty turns
	// webhooks off.
	Secret string
	// Wanted says whether a push to branch concerns this project: the
	// watched branch or a preview pattern. Required with a Secret, as are
	// Trigger, Log and Registerer.
	Wanted func(branch string) bool
	// Trigger receives each push to a wanted branch. It runs while the
	// sender waits for the answer, so it must only queue work.
	Trigger func(Event)
	// Log receives one line per request; refusals at warning level.
	Log *slog.Logger
	// Registerer takes hawser_webhooks_total.
	Registerer prometheus.Registerer
}

// Receiver verifies and parses the webhooks of one project. It is an
// http.Handler meant to be mounted at /webhook/.
type Receiver struct {
	secret  []byte
	wanted  func(string) bool
	trigger func(Event)
	log     *slog.Logger
	total   *prometheus.CounterVec
	seen    *deliveries
}

// New returns a Receiver and registers its counter. With an empty secret the
// Receiver answers every request 404 with a message saying how to turn
// webhooks on, and registers nothing.
func New(o Options) (*Receiver, error) {
	rc := &Receiver{wanted: o.Wanted, trigger: o.Trigger, log: o.Log}
	if o.Secret == "" {
		return rc, nil
	}
	rc.secret = []byte(o.Secret)
	rc.seen = newDeliveries()
	rc.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hawser_webhooks_total",
		Help: "Webhook requests by provider and result: accepted, ignored, unauthorized, malformed, replayed, too_large.",
	}, []string{"provider", "result"})
	if err := o.Registerer.Register(rc.total); err != nil {
		return nil, fmt.Errorf("webhook metrics: %w", err)
	}
	// Series that exist from the start let rate() see the first refusal.
	for _, p := range []string{GitHub, GitLab, Gitea, Generic} {
		for _, r := range []string{resultAccepted, resultIgnored, resultUnauthorized, resultMalformed, resultReplayed, resultTooLarge} {
			rc.total.WithLabelValues(p, r)
		}
	}
	return rc, nil
}

// reply is the answer to one request.
type reply struct {
	status int
	// result is the counter's label; empty for requests not counted
	// (unknown endpoint, webhooks off).
	result  string
	message string
}

// response is the JSON sent back with every answer.
type response struct {
	Result  string `json:"result,omitempty"`
	Message string `json:"message"`
}

// ServeHTTP answers a webhook; the last element of the path names the
// provider.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only a known name reaches the counter; the cap keeps a scanner's
	// long paths from flooding the logs.
	name := fmt.Sprintf("%.64s", path.Base(r.URL.Path))
	if rc.secret == nil {
		rc.answer(w, r, source{provider: name}, reply{http.StatusNotFound, "", offMessage})
		return
	}
	src, ok := lookup(name, r.Header)
	if !ok {
		rc.answer(w, r, source{provider: name}, reply{http.StatusNotFound, "", fmt.Sprintf("no webhook endpoint %q: use /webhook/github, /webhook/gitlab, /webhook/gitea (also Forgejo and Gogs) or /webhook/generic", name)})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rc.answer(w, r, src, reply{http.StatusMethodNotAllowed, resultMalformed, "webhooks are POST requests, not " + r.Method})
		return
	}
	rep := rc.handle(src, w, r)
	if rep.status == http.StatusUnauthorized && src.challenge != "" {
		w.Header().Set("WWW-Authenticate", src.challenge)
	}
	rc.answer(w, r, src, rep)
}

// handle checks one POST from src and runs the trigger when it is a push
// to a wanted branch.
func (rc *Receiver) handle(src source, w http.ResponseWriter, r *http.Request) reply {
	if rep := checkContentType(r.Header.Get("Content-Type")); rep != nil {
		return *rep
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if _, large := errors.AsType[*http.MaxBytesError](err); large {
			return reply{http.StatusRequestEntityTooLarge, resultTooLarge, fmt.Sprintf("body larger than %d bytes: hawser reads only the ref and the commit of a push", MaxBody)}
		}
		return reply{http.StatusBadRequest, resultMalformed, "cannot read the body: " + err.Error()}
	}
	if rep := src.authenticate(rc.secret, payload); rep != nil {
		return *rep
	}
	k, rep := src.kind()
	if rep != nil {
		return *rep
	}
	if k == kindPing {
		return reply{http.StatusOK, resultIgnored, "pong: the secret matches; pushes to watched branches will trigger a reconcile"}
	}
	ev, err := decode(k, payload)
	if err != nil {
		return reply{http.StatusBadRequest, resultMalformed, "body: " + err.Error()}
	}
	ev.Provider, ev.Delivery = src.provider, src.delivery
	return rc.act(src, ev)
}

// act refuses a delivery seen before, then triggers a wanted branch.
func (rc *Receiver) act(src source, ev Event) reply {
	if len(ev.Delivery) > maxDeliveryID {
		return reply{http.StatusBadRequest, resultMalformed, fmt.Sprintf("%s is longer than %d characters", src.deliveryHeader, maxDeliveryID)}
	}
	if ev.Delivery != "" {
		if at, dup := rc.seen.record(ev.Provider + " " + ev.Delivery); dup {
			return reply{http.StatusConflict, resultReplayed, fmt.Sprintf("%s %q was already received at %s and acted on; a redelivery is not needed", src.deliveryHeader, ev.Delivery, at.UTC().Format(time.RFC3339))}
		}
	}
	switch {
	case ev.Branch == "":
		return reply{http.StatusAccepted, resultIgnored, fmt.Sprintf("push to %s ignored: hawser follows branches, not tags or other refs", ev.Ref)}
	case !rc.wanted(ev.Branch):
		return reply{http.StatusAccepted, resultIgnored, fmt.Sprintf("push to branch %s ignored: it is neither the watched branch nor a preview branch", ev.Branch)}
	}
	rc.trigger(ev)
	switch {
	case ev.Deleted:
		return reply{http.StatusAccepted, resultAccepted, fmt.Sprintf("deletion of branch %s accepted: a reconcile is queued", ev.Branch)}
	case ev.After != "":
		return reply{http.StatusAccepted, resultAccepted, fmt.Sprintf("push of %s to branch %s accepted: a reconcile is queued", ev.After, ev.Branch)}
	}
	return reply{http.StatusAccepted, resultAccepted, fmt.Sprintf("push to branch %s accepted: a reconcile is queued", ev.Branch)}
}

// checkContentType refuses anything but JSON, with a hint for the form
// encoding GitHub, Gitea, Forgejo and Gogs offer.
func checkContentType(header string) *reply {
	ct, _, err := mime.ParseMediaType(header)
	switch {
	case err == nil && ct == "application/json":
		return nil
	case ct == "application/x-www-form-urlencoded":
		return &reply{http.StatusUnsupportedMediaType, resultMalformed, "the webhook sends a form (application/x-www-form-urlencoded): in its settings set the content type to application/json"}
	}
	return &reply{http.StatusUnsupportedMediaType, resultMalformed, fmt.Sprintf("Content-Type %.64q is not application/json: send the payload as JSON", header)}
}

// answer counts, logs and writes rep. The log line carries what a user
// needs to find the delivery in the git host's list, never the secret or
// the signature.
func (rc *Receiver) answer(w http.ResponseWriter, r *http.Request, src source, rep reply) {
	if rep.result != "" {
		rc.total.WithLabelValues(src.provider, rep.result).Inc()
	}
	level, msg := slog.LevelInfo, "webhook handled"
	if rep.status >= 400 {
		level, msg = slog.LevelWarn, "webhook refused"
	}
	rc.log.Log(r.Context(), level, msg, "provider", src.provider, "remote", r.RemoteAddr, "delivery", fmt.Sprintf("%.128s", src.delivery), "status", rep.status, "result", rep.result, "reason", rep.message)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rep.status)
	// An error here means the sender hung up; it has its status already.
	json.NewEncoder(w).Encode(response{Result: rep.result, Message: rep.message})
}
