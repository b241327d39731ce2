package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"hawser.dev/hawser/reconciler"
	"hawser.dev/hawser/reconciler/store"
)

// apiTimeout bounds one CLI call to the daemon.
const apiTimeout = 15 * time.Second

// daemonCall sends one request to the admin API of the daemon that serves
// the configuration in envFile, and decodes the JSON answer into out.
func daemonCall(ctx context.Context, envFile, method, path string, in, out any) error {
	cfg, err := loadConfig(envFile, io.Discard)
	if err != nil {
		return fmt.Errorf("%s does not load; run `hawser validate` for details", envFile)
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	url := "http://" + cfg.AdminAddr + path
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("hawser is not running at %s (start it with `make` or `hawser serve`): %w", cfg.AdminAddr, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(answer, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s", e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return json.Unmarshal(answer, out)
}

func status(ctx context.Context, envFile string, stdout io.Writer) error {
	var st reconciler.Status
	if err := daemonCall(ctx, envFile, http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return err
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st reconciler.Status) {
	fmt.Fprintf(w, "project:   %s\n", st.Project)
	fmt.Fprintf(w, "branch:    %s\n", st.Branch)
	fmt.Fprintf(w, "watched:   %s\n", orNone(st.WatchedCommit))
	fmt.Fprintf(w, "running:   %s\n", orNone(st.RunningCommit))
	if st.Paused {
		fmt.Fprintf(w, "paused:    automatic updates wait for `hawser resume`%s\n", pinned(st.PinnedCommit))
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
		for svc, reasons := range d.Services {
			fmt.Fprintf(w, "  %s: %s\n", svc, strings.Join(reasons, "; "))
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

// syncNow asks the daemon for a reconcile now, recreating the named
// services even if nothing changed.
func syncNow(ctx context.Context, envFile string, services []string, stdout io.Writer) error {
	var out map[string]string
	if err := daemonCall(ctx, envFile, http.MethodPost, "/api/v1/sync", syncRequest{Recreate: services}, &out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out["message"])
	return nil
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

func history(ctx context.Context, envFile string, args []string, stdout io.Writer) error {
	if len(args) == 1 {
		var d store.Deployment
		if err := daemonCall(ctx, envFile, http.MethodGet, "/api/v1/deployments/"+url.PathEscape(args[0]), nil, &d); err != nil {
			return err
		}
		printDeployment(stdout, d)
		return nil
	}
	var list []store.Deployment
	if err := daemonCall(ctx, envFile, http.MethodGet, "/api/v1/deployments?limit=20", nil, &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tCOMMIT\tTRIGGER\tRESULT\tSERVICES")
	for _, d := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Started.Format(time.DateTime), reconciler.ShortCommit(d.Commit),
			d.Trigger, d.Result, strings.Join(slices.Sorted(maps.Keys(d.Services)), ","))
	}
	return tw.Flush()
}

func printDeployment(w io.Writer, d store.Deployment) {
	fmt.Fprintf(w, "deployment #%s: %s\n", d.ID, d.Result)
	fmt.Fprintf(w, "commit:    %s (%s)\n", d.Commit, d.Branch)
	fmt.Fprintf(w, "trigger:   %s\n", d.Trigger)
	fmt.Fprintf(w, "started:   %s, took %s\n", d.Started.Format(time.RFC3339), d.Ended.Sub(d.Started).Round(time.Millisecond))
	if d.Reason != "" {
		fmt.Fprintf(w, "reason:    %s\n", d.Reason)
	}
	for _, svc := range slices.Sorted(maps.Keys(d.Services)) {
		fmt.Fprintf(w, "  %s: %s\n", svc, strings.Join(d.Services[svc], "; "))
	}
	for _, svc := range slices.Sorted(maps.Keys(d.BuildLogs)) {
		fmt.Fprintf(w, "  build log of %s: %s\n", svc, d.BuildLogs[svc])
	}
	if d.Logs != "" {
		fmt.Fprintf(w, "last log lines:\n%s\n", d.Logs)
	}
}

func rollback(ctx context.Context, envFile, target string, stdout io.Writer) error {
	var out map[string]string
	if err := daemonCall(ctx, envFile, http.MethodPost, "/api/v1/rollback", rollbackRequest{Target: target}, &out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out["message"])
	return nil
}

// simpleCall posts to an API endpoint without a body and prints its message.
func simpleCall(ctx context.Context, envFile, path string, stdout io.Writer) error {
	var out map[string]string
	if err := daemonCall(ctx, envFile, http.MethodPost, path, nil, &out); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out["message"])
	return nil
}

func listPreviews(ctx context.Context, envFile string, stdout io.Writer) error {
	var list []reconciler.PreviewStatus
	if err := daemonCall(ctx, envFile, http.MethodGet, "/api/v1/previews", nil, &list); err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no previews (set HAWSER_PREVIEW_BRANCHES to give branches one)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BRANCH\tSLUG\tURL\tCOMMIT\tSTATE\tLAST REQUEST")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Branch, p.Slug, p.URL, reconciler.ShortCommit(p.Commit), p.State, p.LastRequest.Format(time.DateTime))
	}
	return tw.Flush()
}
