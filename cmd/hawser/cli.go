package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/store"
)

const (
	// apiTimeout bounds one CLI call to the daemon.
	apiTimeout = 15 * time.Second
	// healthTimeout bounds `hawser health`, which a container healthcheck runs.
	healthTimeout = 5 * time.Second
	// maxAnswer bounds the JSON answer the CLI reads.
	maxAnswer = 8 << 20
)

// apiCLI runs the commands that ask a running daemon, through its API.
type apiCLI struct {
	envFile string
	json    bool // print the API's JSON answers as they are
	stdout  io.Writer
}

// apiClient reaches the admin API of the daemon that serves one
// configuration.
type apiClient struct {
	url   string // without a trailing slash
	token string
}

// client finds the daemon: HAWSER_ADMIN_URL and HAWSER_API_TOKEN in the
// environment come before the values in the .env file, which is read only
// when one of them is missing.
func (c *apiCLI) client() (*apiClient, error) {
	a := &apiClient{url: os.Getenv("HAWSER_ADMIN_URL"), token: os.Getenv("HAWSER_API_TOKEN")}
	if a.url == "" || a.token == "" {
		cfg, err := loadConfig(c.envFile, io.Discard)
		if err != nil {
			return nil, fmt.Errorf("%s does not load; run `hawser validate` for details", c.envFile)
		}
		a.url = cmp.Or(a.url, cfg.AdminURL, "http://"+dialable(cfg.AdminAddr))
		a.token = cmp.Or(a.token, cfg.APIToken.Reveal())
	}
	a.url = strings.TrimSuffix(a.url, "/")
	if a.token != "" && !safeForToken(a.url) {
		return nil, fmt.Errorf("HAWSER_ADMIN_URL %s: the API token would cross the network in clear text; use https:// for a daemon on another host", a.url)
	}
	return a, nil
}

// safeForToken reports whether the token may be sent to rawURL: over
// HTTPS, or plain HTTP to this host.
func safeForToken(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// dialable turns a listen address into one to connect to: a daemon that
// listens on every address is reached on loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// send sends one request to the daemon. An answer that is an error comes
// back as the error its message says.
func (a *apiClient) send(ctx context.Context, method, path string, in any, accept string) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, body)
	if err != nil {
		return nil, fmt.Errorf("HAWSER_ADMIN_URL %q: %w", a.url, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("hawser is not running at %s: start it with `make` or `hawser serve`", a.url)
	case err != nil:
		return nil, fmt.Errorf("cannot reach hawser at %s: %w", a.url, err)
	case resp.StatusCode >= 300:
		defer resp.Body.Close()
		return nil, answerError(resp)
	}
	return resp, nil
}

// answerError is the message of an error answer.
func answerError(resp *http.Response) error {
	var e apiError
	if json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(&e) == nil && e.Message != "" {
		return errors.New(e.Message)
	}
	return fmt.Errorf("%s %s: %s", resp.Request.Method, resp.Request.URL, resp.Status)
}

// request is one API call of a command.
type request struct {
	method, path string
	body         any
	// wait bounds the call; zero means apiTimeout.
	wait time.Duration
}

// ask makes an API call and shows its answer: as JSON with -json, else as
// show prints it.
func (c *apiCLI) ask(ctx context.Context, req request, show func([]byte) error) error {
	a, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(req.wait, apiTimeout))
	defer cancel()
	resp, err := a.send(ctx, req.method, req.path, req.body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.method, resp.Request.URL, err)
	}
	if c.json {
		_, err := c.stdout.Write(answer)
		return err
	}
	return show(answer)
}

// decoded makes a printer of T a printer of T's JSON.
func decoded[T any](show func(T) error) func([]byte) error {
	return func(answer []byte) error {
		var v T
		if err := json.Unmarshal(answer, &v); err != nil {
			return fmt.Errorf("the daemon's answer: %w", err)
		}
		return show(v)
	}
}

// message prints the message of an answer.
func (c *apiCLI) message(answer []byte) error {
	return decoded(func(m messageAnswer) error {
		_, err := fmt.Fprintln(c.stdout, m.Message)
		return err
	})(answer)
}

func (c *apiCLI) status(ctx context.Context) error {
	return c.ask(ctx, request{method: http.MethodGet, path: "/api/v1/status"}, decoded(func(st statusAnswer) error {
		printStatus(c.stdout, st)
		return nil
	}))
}

func printStatus(w io.Writer, st statusAnswer) {
	fmt.Fprintf(w, "project:   %s\n", st.Project)
	fmt.Fprintf(w, "branch:    %s\n", st.Branch)
	fmt.Fprintf(w, "watched:   %s\n", orNone(st.WatchedCommit))
	fmt.Fprintf(w, "running:   %s", orNone(st.RunningCommit))
	if st.RunningSubject != "" {
		fmt.Fprintf(w, " (%s)", st.RunningSubject)
	}
	fmt.Fprintln(w)
	if st.Paused {
		fmt.Fprintf(w, "paused:    automatic updates wait for `hawser resume`%s\n", pinned(st.PinnedCommit))
	}
	if d := st.Deploying; d != nil {
		fmt.Fprintf(w, "deploying: #%s of %s since %s (follow it: hawser logs %s)\n", d.ID, reconciler.ShortCommit(d.Commit), d.Started.Format(time.TimeOnly), d.ID)
	}
	if !st.LastReconcile.IsZero() {
		fmt.Fprintf(w, "reconcile: %s at %s\n", st.LastResult, st.LastReconcile.Format(time.RFC3339))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "error:     %s\n", firstLine(st.LastError))
	}
	if d := st.LastDeployment; d != nil {
		fmt.Fprintf(w, "last deployment: #%s %s of %s at %s\n", d.ID, d.Result, reconciler.ShortCommit(d.Commit), d.Started.Format(time.RFC3339))
		if d.Reason != "" {
			fmt.Fprintf(w, "  reason: %s\n", firstLine(d.Reason))
		}
		for _, svc := range slices.Sorted(maps.Keys(d.Services)) {
			fmt.Fprintf(w, "  %s: %s\n", svc, strings.Join(d.Services[svc], "; "))
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCOMMIT\tIMAGE\tCONTAINERS")
	for _, s := range st.Services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, reconciler.ShortCommit(s.Commit), s.Image, strings.Join(s.States, ", "))
	}
	tw.Flush()
	if len(st.Images) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tIMAGE\tPOLICY\tLOCAL\tREMOTE\tCHECKED\tRESULT")
	for _, im := range st.Images {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", im.Service, im.Ref, im.Policy, shortDigest(im.Local), shortDigest(im.Remote),
			im.Checked.Format(time.TimeOnly), im.Result)
	}
	tw.Flush()
}

// shortDigest abbreviates sha256:<hex> as docker does.
func shortDigest(d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return hex[:min(12, len(hex))]
}

// sync asks the daemon for a reconcile now, recreating the named services
// even if nothing changed.
func (c *apiCLI) sync(ctx context.Context, services []string) error {
	return c.ask(ctx, request{method: http.MethodPost, path: "/api/v1/sync", body: syncRequest{Recreate: services}}, c.message)
}

func pinned(commit string) string {
	if commit == "" {
		return ""
	}
	return "; pinned to " + reconciler.ShortCommit(commit)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// history lists the deployments, or shows the one args names.
func (c *apiCLI) history(ctx context.Context, args []string) error {
	if len(args) == 1 {
		return c.ask(ctx, request{method: http.MethodGet, path: "/api/v1/deployments/" + url.PathEscape(args[0])}, decoded(func(d store.Deployment) error {
			printDeployment(c.stdout, d)
			return nil
		}))
	}
	return c.ask(ctx, request{method: http.MethodGet, path: "/api/v1/deployments?limit=20"}, decoded(func(list []store.Deployment) error {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTARTED\tCOMMIT\tTRIGGER\tRESULT\tSERVICES")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Started.Format(time.DateTime), reconciler.ShortCommit(d.Commit),
				d.Trigger, d.Result, strings.Join(slices.Sorted(maps.Keys(d.Services)), ","))
		}
		return tw.Flush()
	}))
}

func printDeployment(w io.Writer, d store.Deployment) {
	fmt.Fprintf(w, "deployment #%s: %s\n", d.ID, d.Result)
	fmt.Fprintf(w, "commit:    %s (%s)\n", d.Commit, d.Branch)
	fmt.Fprintf(w, "trigger:   %s\n", d.Trigger)
	if d.Ended.IsZero() {
		fmt.Fprintf(w, "started:   %s, still running\n", d.Started.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "started:   %s, took %s\n", d.Started.Format(time.RFC3339), d.Ended.Sub(d.Started).Round(time.Millisecond))
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", d.Reason)
	}
	for _, svc := range slices.Sorted(maps.Keys(d.Services)) {
		fmt.Fprintf(w, "  %s: %s\n", svc, strings.Join(d.Services[svc], "; "))
	}
	for _, svc := range slices.Sorted(maps.Keys(d.BuildLogs)) {
		fmt.Fprintf(w, "  build log of %s: %s\n", svc, d.BuildLogs[svc])
	}
	fmt.Fprintf(w, "its output: hawser logs %s\n", d.ID)
}

func (c *apiCLI) rollback(ctx context.Context, target string) error {
	return c.ask(ctx, request{method: http.MethodPost, path: "/api/v1/rollback", body: rollbackRequest{Target: target}}, c.message)
}

// post calls an API endpoint that takes no body.
func (c *apiCLI) post(ctx context.Context, path string) error {
	return c.ask(ctx, request{method: http.MethodPost, path: path}, c.message)
}

// previews lists the previews, or wakes or destroys the one args names.
func (c *apiCLI) previews(ctx context.Context, args []string) error {
	if len(args) == 2 {
		path := "/api/v1/previews/" + url.PathEscape(args[1]) + "/" + args[0]
		return c.ask(ctx, request{method: http.MethodPost, path: path, wait: previewTimeout + apiTimeout}, c.message)
	}
	return c.ask(ctx, request{method: http.MethodGet, path: "/api/v1/previews"}, decoded(func(list []reconciler.PreviewStatus) error {
		if len(list) == 0 {
			_, err := fmt.Fprintln(c.stdout, "no previews (set HAWSER_PREVIEW_BRANCHES to give branches one)")
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BRANCH\tSLUG\tURL\tCOMMIT\tSTATE\tLAST REQUEST\tVOLUMES")
		for _, p := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Branch, p.Slug, p.URL, reconciler.ShortCommit(p.Commit), p.State, p.LastRequest.Format(time.DateTime), units.HumanSize(float64(p.VolumeBytes)))
		}
		return tw.Flush()
	}))
}

// logs prints a deployment's log (without an ID, the newest deployment's)
// and follows it while the deployment runs.
func (c *apiCLI) logs(ctx context.Context, id string) error {
	if id == "" {
		newest, err := c.newestDeployment(ctx)
		if err != nil {
			return err
		}
		id = newest
	}
	path := "/api/v1/deployments/" + url.PathEscape(id) + "/logs"
	if c.json {
		return c.ask(ctx, request{method: http.MethodGet, path: path}, nil)
	}
	a, err := c.client()
	if err != nil {
		return err
	}
	// A deployment ends within the reconcile timeout; the stream with it.
	ctx, cancel := context.WithTimeout(ctx, reconcileTimeout+apiTimeout)
	defer cancel()
	resp, err := a.send(ctx, http.MethodGet, path, nil, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	ended := false
	err = readEvents(resp.Body, func(event, data string) error {
		if event == "end" {
			ended = true
			return io.EOF
		}
		_, err := fmt.Fprintln(c.stdout, data)
		return err
	})
	if err == nil && !ended {
		err = errors.New("the daemon closed the log before the deployment ended: is hawser stopping?")
	}
	return err
}

// newestDeployment is the ID of the deployment in progress, or else of the
// newest one.
func (c *apiCLI) newestDeployment(ctx context.Context) (string, error) {
	var id string
	quiet := *c
	quiet.json = false
	err := quiet.ask(ctx, request{method: http.MethodGet, path: "/api/v1/deployments?limit=1"}, decoded(func(list []store.Deployment) error {
		if len(list) == 0 {
			return errors.New("no deployment yet")
		}
		id = list[0].ID
		return nil
	}))
	return id, err
}

// readEvents calls on with each event of a stream of server-sent events,
// until the stream ends or on returns an error; io.EOF stops it without one.
func readEvents(r io.Reader, on func(event, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var event string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "data":
				data = append(data, value)
			}
			continue // comments (field "") and IDs need nothing
		}
		if data != nil {
			if err := on(event, strings.Join(data, "\n")); err != nil {
				return ignoreEOF(err)
			}
		}
		event, data = "", nil
	}
	return sc.Err()
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// health checks that the daemon answers, for a container's healthcheck.
func (c *apiCLI) health(ctx context.Context) error {
	a, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	resp, err := a.send(ctx, http.MethodGet, "/healthz", nil, "text/plain")
	if err != nil {
		return err
	}
	resp.Body.Close()
	_, err = fmt.Fprintf(c.stdout, "hawser is up at %s\n", a.url)
	return err
}
