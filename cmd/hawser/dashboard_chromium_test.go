package main

import (
	"cmp"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardInChromium looks at the dashboard as a browser shows it:
// Debian's chromium, headless, driven through the DevTools protocol. It
// keeps a full-page screenshot of each page as a test artifact.
func TestDashboardInChromium(t *testing.T) {
	path := chromium(t)
	f := newDashboardFixture(t)
	b := &browser{t: t, ctx: startBrowser(t, path), dir: artifactsDir(t)}

	b.open(f.url + "/")
	b.expectText("#branch", "main")
	b.expectText("#health", "all services up")
	b.expectText("#services", "web", "worker")
	b.expectText("#sign-in", "Sign in")
	b.screenshot("overview.png")

	b.open(f.url + "/previews")
	b.expectText("table.previews", "feat/login", "running")
	if href := b.attribute("a.preview-link", "href"); href != f.preview {
		t.Errorf("preview link %q, want %q", href, f.preview)
	}
	b.screenshot("previews.png")

	b.open(f.url + "/deployments")
	b.expectText("table.deployments", "#"+f.badID, "rolled back", "#"+f.goodID, "succeeded")
	b.screenshot("deployments.png")

	b.open(f.url + "/deployments/" + f.badID)
	b.expectText("#reason", `service "worker" did not start`)
	b.expectText("#logs-hidden", "sign in")
	b.screenshot("deployment-anonymous.png")

	b.open(f.url + "/login")
	b.run(chromedp.SendKeys(chromedp.CSS("#token"), dashboardToken))
	b.screenshot("login.png")
	b.click("#login")
	b.expectText("#flash", "Signed in until")

	b.click("#pause")
	b.expectText("#flash", "Automatic updates paused")
	b.expectText("#updates", "paused")
	b.screenshot("overview-signed-in.png")
	if !f.status(t).Paused {
		t.Error("the pause button did not pause the project")
	}

	b.open(f.url + "/deployments/" + f.badID)
	b.expectText("#log", crashLine)
	b.screenshot("deployment.png")

	b.run(chromedp.EmulateViewport(390, 844))
	b.open(f.url + "/")
	fits, err := chromedp.Run(b.timed(), chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= document.documentElement.clientWidth`))
	if err != nil || !fits {
		t.Errorf("the overview is wider than a phone's screen (fits %v, err %v)", fits, err)
	}
	b.screenshot("overview-narrow.png")
}

// chromium returns the path of Debian's chromium. Without it the test
// fails in CI (CI=true) and is skipped elsewhere, as tests that need Docker
// do.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium required in CI but not found (make deps installs it): %v", err)
		}
		t.Skipf("chromium not found (make deps installs it; set CI=true to make this a failure): %v", err)
	}
	return path
}

// startBrowser starts a headless chromium for the test, closed at its end.
func startBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		// Chromium will not start its sandbox as root, and tests run as
		// root in containers and CI; the pages it loads are our own.
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first call starts the browser and ties its life to ctx, which
	// has no deadline; each step has its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where the screenshots go: $HAWSER_ARTIFACTS, or
// hawser-artifacts in the temporary directory, so that they outlive the
// test and stay out of the source tree.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(cmp.Or(os.Getenv("HAWSER_ARTIFACTS"), filepath.Join(os.TempDir(), "hawser-artifacts")), "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one tab of a test's chromium.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string
}

// stepTimeout bounds one browser step.
const stepTimeout = 30 * time.Second

// timed returns a context for one step, ended with the test.
func (b *browser) timed() context.Context {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	b.t.Cleanup(cancel)
	return ctx
}

func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.timed(), steps...); err != nil {
		b.t.Fatal(err)
	}
}

// open loads a page and checks that it answered 200.
func (b *browser) open(url string) {
	b.t.Helper()
	resp, err := chromedp.Run(b.timed(), chromedp.NavigateResponse(url))
	if err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("open %s: %d %s", url, resp.Status, resp.StatusText)
	}
}

// click clicks a button that submits a form, and waits for the page the
// form leads to.
func (b *browser) click(selector string) {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.timed(), chromedp.Click(chromedp.CSS(selector)))
	if err != nil {
		b.t.Fatalf("click %s: %v", selector, err)
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("click %s: the page it leads to answered %d %s", selector, resp.Status, resp.StatusText)
	}
}

// expectText checks that the element's rendered text holds each of want.
func (b *browser) expectText(selector string, want ...string) {
	b.t.Helper()
	text, err := chromedp.Run(b.timed(), chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", selector, err)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			b.t.Errorf("%s shows %q, which lacks %q", selector, text, w)
		}
	}
}

func (b *browser) attribute(selector, name string) string {
	b.t.Helper()
	attrs, err := chromedp.Run(b.timed(), chromedp.Attributes(chromedp.CSS(selector)))
	if err != nil {
		b.t.Fatalf("attributes of %s: %v", selector, err)
	}
	return attrs[name]
}

// screenshot keeps a full-page PNG of the current page.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.timed(), chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}
