package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testSecret = "correct-horse-battery-staple-42"

// sender is how one git host signs and labels its webhooks, and which of
// the samples in testdata it sends.
type sender struct {
	name     string
	provider string
	// sign sets the header that proves knowledge of secret.
	sign               func(h http.Header, secret string, body []byte)
	eventHeader        string
	deliveryHeader     string
	push, pushEvent    string
	deletion, delEvent string
	tag, tagEvent      string
	deliveryID         string
}

func hexHMAC(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func giteaLike(product string) sender {
	return sender{
		name: product, provider: Gitea,
		sign: func(h http.Header, secret string, body []byte) {
			h.Set("X-"+product+"-Signature", hexHMAC(secret, body))
		},
		eventHeader: "X-" + product + "-Event", deliveryHeader: "X-" + product + "-Delivery",
		push: "gitea/push.json", pushEvent: "push",
		deletion: "gitea/delete.json", delEvent: "delete",
		tag: "gitea/push-tag.json", tagEvent: "push",
		deliveryID: "8c1f6a1e-3b5d-4a7e-9f2c-6d8e0b4a2c17",
	}
}

var senders = []sender{
	{
		name: "GitHub", provider: GitHub,
		sign: func(h http.Header, secret string, body []byte) {
			h.Set("X-Hub-Signature-256", "sha256="+hexHMAC(secret, body))
		},
		eventHeader: "X-GitHub-Event", deliveryHeader: "X-GitHub-Delivery",
		push: "github/push.json", pushEvent: "push",
		deletion: "github/push-deleted.json", delEvent: "push",
		tag: "github/push-tag.json", tagEvent: "push",
		deliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	},
	{
		name: "GitLab", provider: GitLab,
		sign: func(h http.Header, secret string, _ []byte) {
			h.Set("X-Gitlab-Token", secret)
		},
		eventHeader: "X-Gitlab-Event", deliveryHeader: "X-Gitlab-Event-UUID",
		push: "gitlab/push.json", pushEvent: "Push Hook",
		deletion: "gitlab/push-deleted.json", delEvent: "Push Hook",
		tag: "gitlab/tag-push.json", tagEvent: "Tag Push Hook",
		deliveryID: "13792a34-cac6-4fda-95a8-c58e00a3954e",
	},
	giteaLike("Gitea"),
	giteaLike("Forgejo"),
	giteaLike("Gogs"),
	{
		name: "generic", provider: Generic,
		sign: func(h http.Header, secret string, _ []byte) {
			h.Set("Authorization", "Bearer "+secret)
		},
		deliveryHeader: "X-Hawser-Delivery",
		push:           "generic/push.json",
		deletion:       "generic/delete.json",
		tag:            "generic/tag.json",
		deliveryID:     "ci-run-4711",
	},
}

// delivery is one request a sender makes.
type delivery struct {
	body        []byte
	event       string
	secret      string // empty: unsigned
	contentType string
	method      string
}

func (s sender) deliver(t *testing.T, url string, d delivery) (int, response, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), cmpOr(d.method, http.MethodPost), url+"/webhook/"+s.provider, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", cmpOr(d.contentType, "application/json"))
	req.Header.Set("User-Agent", s.name+"-Hookshot/test")
	if d.secret != "" {
		s.sign(req.Header, d.secret, d.body)
	}
	if s.eventHeader != "" && d.event != "" {
		req.Header.Set(s.eventHeader, d.event)
	}
	req.Header.Set(s.deliveryHeader, s.deliveryID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b response
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, b, resp.Header
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// harness is a Receiver mounted as the admin listener mounts it, with what
// it triggered, logged and counted.
type harness struct {
	rc  *Receiver
	url string
	reg *prometheus.Registry
	log *bytes.Buffer

	mu        sync.Mutex
	triggered []Event
}

func newHarness(t *testing.T, secret, wanted string) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), log: &bytes.Buffer{}}
	rc, err := New(Options{
		Secret: secret,
		Wanted: func(branch string) bool {
			ok, err := path.Match(wanted, branch)
			return err == nil && ok
		},
		Trigger: func(ev Event) {
			h.mu.Lock()
			h.triggered = append(h.triggered, ev)
			h.mu.Unlock()
		},
		Log:        slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.rc = rc
	mux := http.NewServeMux()
	mux.Handle("/webhook/", rc)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func (h *harness) events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.triggered...)
}

const (
	mainCommit = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807"
	wrongKey   = "not-the-secret-but-long-enough"
)

func TestEachProviderVerifiesParsesAndTriggers(t *testing.T) {
	type want struct {
		status int
		result string
		// message is a part of the answer a user acts on.
		message string
		event   *Event
	}
	cases := []struct {
		name   string
		wanted string
		// needsEvents marks cases about the event header, which the
		// generic endpoint does not have.
		needsEvents bool
		d           func(s sender) delivery
		// replay sends the delivery a second time, with second's answer.
		replay *want
		want   want
	}{
		{
			name: "push to the watched branch triggers", wanted: "main",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.push), event: s.pushEvent, secret: testSecret}
			},
			want: want{http.StatusAccepted, resultAccepted, "accepted: a reconcile is queued",
				&Event{Ref: "refs/heads/main", Branch: "main", After: mainCommit}},
		},
		{
			name: "push to another branch is ignored", wanted: "production",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.push), event: s.pushEvent, secret: testSecret}
			},
			want: want{http.StatusAccepted, resultIgnored, "push to branch main ignored", nil},
		},
		{
			name: "deleting a preview branch triggers", wanted: "feature/*",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.deletion), event: s.delEvent, secret: testSecret}
			},
			want: want{http.StatusAccepted, resultAccepted, "deletion of branch feature/cart accepted",
				&Event{Ref: "refs/heads/feature/cart", Branch: "feature/cart", Deleted: true}},
		},
		{
			name: "tag push is ignored", wanted: "*",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.tag), event: s.tagEvent, secret: testSecret}
			},
			want: want{http.StatusAccepted, resultIgnored, "push to refs/tags/v1.4.0 ignored", nil},
		},
		{
			name: "wrong secret is refused", wanted: "main",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.push), event: s.pushEvent, secret: wrongKey}
			},
			want: want{http.StatusUnauthorized, resultUnauthorized, "HAWSER_WEBHOOK_SECRET", nil},
		},
		{
			name: "missing signature is refused", wanted: "main",
			d:    func(s sender) delivery { return delivery{body: sample(t, s.push), event: s.pushEvent} },
			want: want{http.StatusUnauthorized, resultUnauthorized, "missing", nil},
		},
		{
			name: "replayed delivery is refused", wanted: "main",
			d: func(s sender) delivery {
				return delivery{body: sample(t, s.push), event: s.pushEvent, secret: testSecret}
			},
			want: want{http.StatusAccepted, resultAccepted, "accepted",
				&Event{Ref: "refs/heads/main", Branch: "main", After: mainCommit}},
			replay: &want{http.StatusConflict, resultReplayed, "already received", nil},
		},
		{
			name: "oversized body is refused", wanted: "main",
			d: func(s sender) delivery {
				big := append([]byte(`{"ref":"refs/heads/main","padding":"`), bytes.Repeat([]byte("x"), MaxBody)...)
				return delivery{body: append(big, `"}`...), event: s.pushEvent, secret: testSecret}
			},
			want: want{http.StatusRequestEntityTooLarge, resultTooLarge, "larger than 1048576 bytes", nil},
		},
		{
			name: "malformed JSON is refused", wanted: "main",
			d: func(s sender) delivery {
				return delivery{body: []byte(`{"ref": "refs/heads/main", "after": `), event: s.pushEvent, secret: testSecret}
			},
			want: want{http.StatusBadRequest, resultMalformed, "not JSON at byte", nil},
		},
		{
			name: "unknown event is refused", wanted: "main", needsEvents: true,
			d: func(s sender) delivery {
				return delivery{body: []byte(`{"action":"opened"}`), event: "issues", secret: testSecret}
			},
			want: want{http.StatusBadRequest, resultMalformed, `"issues" is not an event hawser reads`, nil},
		},
		{
			name: "missing event header is refused", wanted: "main", needsEvents: true,
			d:    func(s sender) delivery { return delivery{body: sample(t, s.push), secret: testSecret} },
			want: want{http.StatusBadRequest, resultMalformed, "missing X-", nil},
		},
		{
			name: "form encoded payload is refused", wanted: "main",
			d: func(s sender) delivery {
				return delivery{body: []byte("payload=%7B%7D"), event: s.pushEvent, secret: testSecret, contentType: "application/x-www-form-urlencoded"}
			},
			want: want{http.StatusUnsupportedMediaType, resultMalformed, "set the content type to application/json", nil},
		},
		{
			name: "GET is refused", wanted: "main",
			d:    func(s sender) delivery { return delivery{method: http.MethodGet} },
			want: want{http.StatusMethodNotAllowed, resultMalformed, "POST", nil},
		},
	}
	check := func(t *testing.T, h *harness, s sender, status int, got response, w want, triggered []Event) {
		t.Helper()
		if status != w.status || got.Result != w.result || !strings.Contains(got.Message, w.message) {
			t.Errorf("answer %d %+v, want %d %s with %q", status, got, w.status, w.result, w.message)
		}
		if w.event == nil {
			if len(triggered) != 0 {
				t.Errorf("triggered %+v, want nothing", triggered)
			}
			return
		}
		ev := *w.event
		ev.Provider, ev.Delivery = s.provider, s.deliveryID
		if len(triggered) != 1 || triggered[0] != ev {
			t.Errorf("triggered %+v, want [%+v]", triggered, ev)
		}
	}
	for _, s := range senders {
		for _, c := range cases {
			if c.needsEvents && s.eventHeader == "" {
				continue
			}
			t.Run(s.name+"/"+c.name, func(t *testing.T) {
				h := newHarness(t, testSecret, c.wanted)
				d := c.d(s)
				status, got, _ := s.deliver(t, h.url, d)
				check(t, h, s, status, got, c.want, h.events())
				counts := map[string]float64{c.want.result: 1}
				if c.replay != nil {
					status, got, _ = s.deliver(t, h.url, d)
					check(t, h, s, status, got, *c.replay, h.events()[1:])
					counts[c.replay.result]++
				}
				for result, n := range counts {
					if got := testutil.ToFloat64(h.rc.total.WithLabelValues(s.provider, result)); got != n {
						t.Errorf("hawser_webhooks_total{provider=%q,result=%q} = %v, want %v", s.provider, result, got, n)
					}
				}
				assertNoSecretLogged(t, h.log.String(), s, d)
			})
		}
	}
}

// assertNoSecretLogged fails when the log holds the secret or what the
// sender sent to prove it.
func assertNoSecretLogged(t *testing.T, logged string, s sender, d delivery) {
	t.Helper()
	if !strings.Contains(logged, "provider="+s.provider) || !strings.Contains(logged, "remote=127.0.0.1:") {
		t.Errorf("log lacks provider or remote address:\n%s", logged)
	}
	proofs := []string{testSecret}
	if d.secret != "" {
		h := http.Header{}
		s.sign(h, d.secret, d.body)
		for _, v := range h {
			proofs = append(proofs, strings.TrimPrefix(strings.TrimPrefix(v[0], "sha256="), "Bearer "))
		}
	}
	for _, p := range proofs {
		if strings.Contains(logged, p) {
			t.Errorf("log holds a secret or signature %q:\n%s", p, logged)
		}
	}
}

func TestGitHubPingAnswersWithoutTriggering(t *testing.T) {
	h := newHarness(t, testSecret, "*")
	github := senders[0]
	ping := sample(t, "github/ping.json")
	status, got, _ := github.deliver(t, h.url, delivery{body: ping, event: "ping", secret: testSecret})
	if status != http.StatusOK || got.Result != resultIgnored || !strings.Contains(got.Message, "the secret matches") {
		t.Errorf("ping: %d %+v, want 200 pong", status, got)
	}
	status, got, _ = github.deliver(t, h.url, delivery{body: ping, event: "ping", secret: wrongKey})
	if status != http.StatusUnauthorized {
		t.Errorf("ping with the wrong secret: %d %+v, want 401", status, got)
	}
	if evs := h.events(); len(evs) != 0 {
		t.Errorf("ping triggered %+v", evs)
	}
}

func TestRedeliveryOfARefusedDeliveryIsAccepted(t *testing.T) {
	h := newHarness(t, testSecret, "main")
	github := senders[0]
	push := sample(t, "github/push.json")
	if status, got, _ := github.deliver(t, h.url, delivery{body: push, event: "push", secret: wrongKey}); status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d %+v", status, got)
	}
	// The user fixes the secret and redelivers: the same delivery id.
	if status, got, _ := github.deliver(t, h.url, delivery{body: push, event: "push", secret: testSecret}); status != http.StatusAccepted || got.Result != resultAccepted {
		t.Errorf("redelivery: %d %+v, want 202 accepted", status, got)
	}
}

func TestGenericRefusalCarriesBearerChallenge(t *testing.T) {
	h := newHarness(t, testSecret, "main")
	generic := senders[len(senders)-1]
	status, _, hdr := generic.deliver(t, h.url, delivery{body: sample(t, generic.push)})
	if status != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("got %d WWW-Authenticate %q, want 401 with a Bearer challenge", status, hdr.Get("WWW-Authenticate"))
	}
}

func TestGenericAcceptsBareBranchAndAnyCaseOfBearer(t *testing.T) {
	h := newHarness(t, testSecret, "main")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.url+"/webhook/generic", strings.NewReader(`{"ref":"main"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "bearer "+testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := Event{Provider: Generic, Ref: "refs/heads/main", Branch: "main"}
	if evs := h.events(); resp.StatusCode != http.StatusAccepted || len(evs) != 1 || evs[0] != want {
		t.Errorf("got %d %+v, want 202 [%+v]", resp.StatusCode, evs, want)
	}
}

func TestWebhooksOffAnswer404AndRegisterNothing(t *testing.T) {
	h := newHarness(t, "", "*")
	status, got, _ := senders[0].deliver(t, h.url, delivery{body: sample(t, "github/push.json"), event: "push", secret: testSecret})
	if status != http.StatusNotFound || !strings.Contains(got.Message, "set HAWSER_WEBHOOK_SECRET") {
		t.Errorf("got %d %+v, want 404 naming HAWSER_WEBHOOK_SECRET", status, got)
	}
	if n, err := testutil.GatherAndCount(h.reg); err != nil || n != 0 {
		t.Errorf("registered %d series (%v), want none", n, err)
	}
}

func TestUnknownEndpointIsNotFound(t *testing.T) {
	h := newHarness(t, testSecret, "*")
	resp, err := http.Post(h.url+"/webhook/bitbucket", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(msg), "/webhook/generic") {
		t.Errorf("got %d %s, want 404 listing the endpoints", resp.StatusCode, msg)
	}
	if n, err := testutil.GatherAndCount(h.reg, "hawser_webhooks_total"); err != nil || n != 24 {
		t.Errorf("hawser_webhooks_total has %d series (%v), want 24: four providers by six results", n, err)
	}
}

func TestSecondReceiverOnOneRegistryIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := Options{Secret: testSecret, Log: slog.New(slog.DiscardHandler), Registerer: reg}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o); err == nil {
		t.Error("a second receiver registered the same counter; want an error")
	}
}
