package reconciler

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"hawser.dev/hawser/reconciler/images"
	"hawser.dev/hawser/reconciler/store"
)

// Bounds of the deployment logs a reconciler keeps in memory: the log of
// the deployment in progress and of the last few, for `hawser logs`. An
// older deployment's log is made again from its record and build logs.
const (
	logBytes      = 512 << 10 // per deployment; past it the oldest lines go
	lineBytes     = 4 << 10   // a longer line is cut
	logsKept      = 5         // finished deployments whose log stays
	buildLogBytes = 128 << 10 // of a build's output, the end that a log shows
	resultRunning = "running" // the result of a deployment in progress
)

// DeploymentLog is what one deployment did, in lines: the images it got
// with their build output, the services it recreated and why, and how it
// ended, with the last lines of a container that did not start. Those can
// hold an application's secrets: serve them only to whom may read them.
type DeploymentLog struct {
	mu      sync.Mutex
	head    store.Deployment // what was known when it started
	lines   []string
	size    int           // bytes in lines
	dropped int           // lines dropped from the start to stay under logBytes
	more    chan struct{} // closed and replaced when lines come or the log ends
	result  string        // empty while the deployment runs
}

// LogPage is the part of a deployment log that Read returns.
type LogPage struct {
	Lines []string
	// Skipped counts lines asked for that the log no longer holds.
	Skipped int
	// Next is the index of the line after the page, to read from next.
	Next int
	// Result is how the deployment ended: a store result, "unchanged" when
	// there was nothing to change, or empty while it runs.
	Result string
	// More is closed when lines past the page come or the deployment ends.
	More <-chan struct{}
}

func newDeploymentLog(head store.Deployment) *DeploymentLog {
	return &DeploymentLog{head: head, more: make(chan struct{})}
}

// Read returns the lines from index from on; lines are counted from the
// first the deployment wrote, including those dropped since.
func (l *DeploymentLog) Read(from int) LogPage {
	l.mu.Lock()
	defer l.mu.Unlock()
	from = max(from, 0)
	p := LogPage{Next: l.dropped + len(l.lines), Result: l.result, More: l.more}
	if from < l.dropped {
		p.Skipped, from = l.dropped-from, l.dropped
	}
	if from < p.Next {
		p.Lines = slices.Clone(l.lines[from-l.dropped:])
	}
	return p
}

// lineBreaks turns every line break into a newline: a log line holds none,
// so that a line is one event of a server-sent event stream.
var lineBreaks = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// add appends text, line by line, and wakes the readers.
func (l *DeploymentLog) add(texts ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.result != "" {
		return
	}
	for _, text := range texts {
		for _, line := range strings.Split(lineBreaks.Replace(text), "\n") {
			if len(line) > lineBytes {
				line = strings.ToValidUTF8(line[:lineBytes], "") + " [cut]"
			}
			l.lines = append(l.lines, line)
			l.size += len(line)
		}
	}
	n := 0
	for l.size > logBytes {
		l.size -= len(l.lines[n])
		n++
	}
	l.lines, l.dropped = l.lines[n:], l.dropped+n
	l.wake()
}

// end marks the log as finished with the deployment's result.
func (l *DeploymentLog) end(result string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.result = result
	l.wake()
}

func (l *DeploymentLog) wake() {
	close(l.more)
	l.more = make(chan struct{})
}

// logBook holds a reconciler's deployment logs. Its zero value is ready.
type logBook struct {
	mu      sync.Mutex
	running *DeploymentLog
	kept    []*DeploymentLog // finished, oldest first
}

// start opens the log of a deployment that begins.
func (b *logBook) start(d store.Deployment) *DeploymentLog {
	d.Result = resultRunning
	l := newDeploymentLog(d)
	l.add(header(d))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running = l
	return l
}

// add writes lines to the log of the deployment in progress.
func (b *logBook) add(lines ...string) {
	b.mu.Lock()
	l := b.running
	b.mu.Unlock()
	if l != nil {
		l.add(lines...)
	}
}

// finish ends the running log with how d ended.
func (b *logBook) finish(d store.Deployment) {
	b.mu.Lock()
	l := b.running
	b.running = nil
	b.kept = append(b.kept, l)
	if len(b.kept) > logsKept {
		b.kept = slices.Delete(b.kept, 0, len(b.kept)-logsKept)
	}
	b.mu.Unlock()
	l.add(outcome(d)...)
	l.end(cmp.Or(d.Result, resultUnchanged))
}

// find returns the log of a deployment this reconciler runs or ran lately.
func (b *logBook) find(id string) *DeploymentLog {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running != nil && b.running.head.ID == id {
		return b.running
	}
	for _, l := range b.kept {
		if l.head.ID == id {
			return l
		}
	}
	return nil
}

// Deploying returns the deployment in progress, with the result "running",
// and whether there is one.
func (r *Reconciler) Deploying() (store.Deployment, bool) {
	r.logs.mu.Lock()
	defer r.logs.mu.Unlock()
	if r.logs.running == nil {
		return store.Deployment{}, false
	}
	return r.logs.running.head, true
}

// DeploymentLog returns the log of a deployment. While it runs, and for a
// few deployments after, that is the live log; an older deployment's is
// made from its record and build logs. An unknown ID is store.ErrNotFound.
func (r *Reconciler) DeploymentLog(id string) (*DeploymentLog, error) {
	if l := r.logs.find(id); l != nil {
		return l, nil
	}
	d, err := r.store.Deployment(r.project.Name, id)
	if err != nil {
		return nil, err
	}
	l := newDeploymentLog(d)
	l.add(header(d))
	for _, svc := range slices.Sorted(maps.Keys(d.BuildLogs)) {
		l.add(buildOutput(svc, d.BuildLogs[svc])...)
	}
	l.add(recreations(d)...)
	l.add(outcome(d)...)
	l.end(d.Result)
	return l, nil
}

// header is a deployment log's first line.
func header(d store.Deployment) string {
	return fmt.Sprintf("deployment #%s of %s (%s), trigger %s, started %s",
		d.ID, ShortCommit(d.Commit), d.Branch, d.Trigger, d.Started.Format(time.RFC3339))
}

// recreations says which services a deployment recreated, and why.
func recreations(d store.Deployment) []string {
	lines := make([]string, 0, len(d.Services))
	for _, svc := range slices.Sorted(maps.Keys(d.Services)) {
		lines = append(lines, fmt.Sprintf("recreating %s: %s", svc, strings.Join(d.Services[svc], "; ")))
	}
	return lines
}

// outcome is how a deployment ended; a container that did not start adds
// its last lines (a failed build's are in its build output).
func outcome(d store.Deployment) []string {
	took := d.Ended.Sub(d.Started).Round(time.Millisecond)
	switch d.Result {
	case "":
		return []string{"nothing to change"}
	case store.ResultSucceeded:
		return []string{fmt.Sprintf("deployment succeeded in %s", took)}
	}
	lines := []string{fmt.Sprintf("deployment %s after %s: %s", d.Result, took, d.Reason)}
	if d.Result == store.ResultRolledBack && d.Logs != "" {
		lines = append(lines, "last lines of the container that did not start:")
		lines = append(lines, strings.Split(d.Logs, "\n")...)
	}
	return lines
}

// gotImage says what image a service got, with the output of its build.
func gotImage(service string, img images.Image) []string {
	switch {
	case img.Built:
		return append([]string{fmt.Sprintf("built %s in %s", img.Ref, img.BuildDuration.Round(time.Millisecond))}, buildOutput(service, img.Log)...)
	case img.Pulled:
		return []string{"pulled " + img.Ref}
	}
	return []string{"using " + img.Ref}
}

// buildOutput is the end of a build's log file, each line prefixed with
// the service as docker compose does.
func buildOutput(service, path string) []string {
	lines := []string{fmt.Sprintf("build output of %s (%s):", service, path)}
	text, cut, err := readEnd(path, buildLogBytes)
	if err != nil {
		return append(lines, fmt.Sprintf("%s | cannot read the build log: %v", service, err))
	}
	if cut {
		lines = append(lines, service+" | [earlier output cut; the whole of it is in the file]")
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, buildLogBytes)
	for sc.Scan() {
		lines = append(lines, service+" | "+sc.Text())
	}
	return lines
}

// readEnd reads at most n bytes from the end of a file, from the start of
// a line, and reports whether it left out the file's beginning.
func readEnd(path string, n int64) (string, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, err
	}
	off := max(fi.Size()-n, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, off, n))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, err
	}
	text := string(data)
	if off > 0 {
		_, text, _ = strings.Cut(text, "\n")
	}
	return text, off > 0, nil
}
