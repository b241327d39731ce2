package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testWebhookSecret = "the-webhook-secret-of-the-tests"

// githubPush sends what GitHub sends for a push to branch, signed with
// secret, to the webhook endpoint at addr (with host as the Host header).
func githubPush(t *testing.T, addr, host, branch, after, delivery, secret string) int {
	t.Helper()
	body := fmt.Sprintf(`{"ref": "refs/heads/%s", "before": "%s", "after": "%s", "deleted": false}`, branch, strings.Repeat("0", 40), after)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook/github", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// reconciles is the daemon's hawser_reconcile_total, all results summed.
func (s servedProject) reconciles(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "hawser_reconcile_total{"); ok {
			n, err := strconv.Atoi(line[strings.LastIndex(line, " ")+1:])
			if err != nil {
				t.Fatalf("metrics line %q: %v", sc.Text(), err)
			}
			total += n
		}
	}
	return total
}

func (s servedProject) running(t *testing.T) string {
	t.Helper()
	var st statusAnswer
	decode(t, apiCall(t, s.admin, http.MethodGet, "/api/v1/status", "", ""), &st)
	return st.RunningCommit
}

func TestABurstOfSignedPushesDeploysOnceAndABadSignatureNothing(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_WEBHOOK_SECRET="+testWebhookSecret)
	s.waitDeployed(t)
	next := s.repo.Commit("second", map[string]string{"compose.yaml": strings.Replace(sleeper, "3600", "3601", 1)})

	before := s.reconciles(t)
	if code := githubPush(t, s.admin, s.admin, "main", next, "forged", "not-the-secret-at-all"); code != http.StatusUnauthorized {
		t.Fatalf("a push with a bad signature answers %d", code)
	}
	if code := githubPush(t, s.admin, s.admin, "other", next, "elsewhere", testWebhookSecret); code != http.StatusAccepted {
		t.Fatalf("a push to another branch answers %d", code)
	}
	time.Sleep(time.Second)
	if got := s.reconciles(t); got != before || s.running(t) != s.commit {
		t.Fatalf("a refused or ignored webhook deployed: %d reconciles, running %s", got-before, s.running(t))
	}

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if code := githubPush(t, s.admin, s.admin, "main", next, fmt.Sprint("delivery-", i), testWebhookSecret); code != http.StatusAccepted {
				t.Errorf("push %d answers %d", i, code)
			}
		})
	}
	wg.Wait()
	waitFor(t, func() bool { return s.running(t) == next })
	time.Sleep(time.Second)
	if got := s.reconciles(t) - before; got != 1 {
		t.Fatalf("20 pushes made %d reconciles, want 1", got)
	}
	if code := githubPush(t, s.admin, s.admin, "main", next, "delivery-3", testWebhookSecret); code != http.StatusConflict {
		t.Errorf("a replayed delivery answers %d", code)
	}
}

func TestTheAdminHostServesWebhooksAndTheGuardedAPIOnTheFrontEnd(t *testing.T) {
	s := serveProject(t, sleeper, "HAWSER_WEBHOOK_SECRET="+testWebhookSecret, "HAWSER_API_TOKEN="+testToken, "HAWSER_ADMIN_HOST=ops.localhost")
	s.waitDeployed(t)
	call := func(path, token string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+s.front+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "ops.localhost"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for path, want := range map[string]int{"/api/v1/status": http.StatusUnauthorized, "/metrics": http.StatusNotFound, "/": http.StatusNotFound, "/healthz": http.StatusOK} {
		if got := call(path, ""); got != want {
			t.Errorf("GET %s at the admin host without a token: %d, want %d", path, got, want)
		}
	}
	if got := call("/api/v1/status", testToken); got != http.StatusOK {
		t.Errorf("GET /api/v1/status at the admin host with the token: %d", got)
	}
	next := s.repo.Commit("second", map[string]string{"compose.yaml": strings.Replace(sleeper, "3600", "3602", 1)})
	if code := githubPush(t, s.front, "ops.localhost", "main", next, "via-front-end", testWebhookSecret); code != http.StatusAccepted {
		t.Fatalf("a push through the front end answers %d", code)
	}
	waitFor(t, func() bool { return s.running(t) == next })
}
