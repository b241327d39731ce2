package reconciler

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hawser.dev/hawser/reconciler/store"
)

// closed reports whether ch is closed; logs close it before add and end
// return.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestLogReadersAreWokenByNewLinesAndByTheEnd(t *testing.T) {
	l := newDeploymentLog(store.Deployment{ID: "1"})
	first := l.Read(0)
	if len(first.Lines) != 0 || first.Result != "" || closed(first.More) {
		t.Fatalf("an empty running log: %+v", first)
	}
	l.add("building web")
	if !closed(first.More) {
		t.Fatal("a new line did not wake the reader")
	}
	second := l.Read(first.Next)
	if !slices.Equal(second.Lines, []string{"building web"}) || second.Next != 1 || second.Result != "" {
		t.Fatalf("after one line: %+v", second)
	}
	l.end(store.ResultSucceeded)
	if !closed(second.More) {
		t.Fatal("the end did not wake the reader")
	}
	l.add("too late")
	last := l.Read(second.Next)
	if len(last.Lines) != 0 || last.Result != store.ResultSucceeded || last.Next != 1 {
		t.Fatalf("after the end: %+v", last)
	}
}

func TestLogKeepsItsNewestLinesWithinItsBound(t *testing.T) {
	l := newDeploymentLog(store.Deployment{ID: "1"})
	line := strings.Repeat("x", 1000)
	n := 3 * logBytes / len(line)
	for i := range n {
		l.add(fmt.Sprintf("%d %s", i, line))
	}
	p := l.Read(0)
	if p.Next != n || p.Skipped+len(p.Lines) != n || p.Skipped == 0 {
		t.Fatalf("next %d, skipped %d, kept %d of %d lines", p.Next, p.Skipped, len(p.Lines), n)
	}
	size := 0
	for _, l := range p.Lines {
		size += len(l)
	}
	if size > logBytes {
		t.Errorf("%d bytes kept, more than %d", size, logBytes)
	}
	if want := fmt.Sprintf("%d ", n-1); !strings.HasPrefix(p.Lines[len(p.Lines)-1], want) {
		t.Errorf("the last line kept is not the last written")
	}
	if again := l.Read(n - 1); len(again.Lines) != 1 || again.Skipped != 0 {
		t.Errorf("reading the last line: %+v", again)
	}
}

func TestLogLinesHoldNoLineBreakAndAreCut(t *testing.T) {
	l := newDeploymentLog(store.Deployment{ID: "1"})
	l.add("a\r\nb\rc\nd", strings.Repeat("é", lineBytes))
	p := l.Read(0)
	if !slices.Equal(p.Lines[:4], []string{"a", "b", "c", "d"}) || len(p.Lines) != 5 {
		t.Fatalf("lines = %q", p.Lines)
	}
	long := p.Lines[4]
	if !strings.HasSuffix(long, " [cut]") || len(long) > lineBytes+len(" [cut]") || !strings.HasPrefix(long, "éé") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("a long line was not cut at a character within %d bytes: %d bytes", lineBytes, len(long))
	}
}

func TestLogBookKeepsTheRunningAndTheLastFewFinishedLogs(t *testing.T) {
	var b logBook
	for i := 1; i <= logsKept+2; i++ {
		id := fmt.Sprint(i)
		l := b.start(store.Deployment{ID: id, Commit: "0123456789abcdef", Branch: "main", Trigger: "sync"})
		if b.find(id) != l {
			t.Fatalf("the running deployment %s has no log", id)
		}
		b.add("recreating web: missing")
		b.finish(store.Deployment{ID: id, Result: store.ResultSucceeded})
		p := l.Read(0)
		if p.Result != store.ResultSucceeded || !slices.Contains(p.Lines, "recreating web: missing") ||
			!strings.HasPrefix(p.Lines[0], "deployment #"+id+" of 0123456789ab (main), trigger sync") {
			t.Fatalf("log of %s: %+v", id, p)
		}
	}
	if b.find("1") != nil || b.find("2") != nil {
		t.Error("logs older than the last few are kept")
	}
	if b.find("3") == nil || b.find(fmt.Sprint(logsKept+2)) == nil {
		t.Error("the last few logs are gone")
	}
	b.add("no deployment runs")
	if b.running != nil {
		t.Error("a log runs after the deployment ended")
	}
}

func TestADeploymentWithNothingToChangeEndsItsLogAsUnchanged(t *testing.T) {
	var b logBook
	l := b.start(store.Deployment{ID: "1"})
	b.finish(store.Deployment{ID: "1"})
	if p := l.Read(0); p.Result != resultUnchanged || p.Lines[len(p.Lines)-1] != "nothing to change" {
		t.Errorf("log = %+v", p)
	}
}

func TestBuildOutputShowsTheEndOfALongBuildLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.log")
	var text strings.Builder
	for i := 0; text.Len() < 2*buildLogBytes; i++ {
		fmt.Fprintf(&text, "step %d\n", i)
	}
	text.WriteString("the last line\n")
	if err := os.WriteFile(path, []byte(text.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := buildOutput("web", path)
	if lines[0] != "build output of web ("+path+"):" || !strings.Contains(lines[1], "earlier output cut") {
		t.Errorf("head = %q", lines[:2])
	}
	if !strings.HasPrefix(lines[2], "web | step ") || lines[len(lines)-1] != "web | the last line" {
		t.Errorf("lines %q ... %q", lines[2], lines[len(lines)-1])
	}
	if missing := buildOutput("web", path+".gone"); len(missing) != 2 || !strings.Contains(missing[1], "cannot read the build log") {
		t.Errorf("missing log: %q", missing)
	}
}
