package proxy

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed pages/error.html
var errorPageSource string

// errorPage is parsed once; a parsed template is read-only.
var errorPage = template.Must(template.New("error").Parse(errorPageSource))

// page is an answer the proxy gives itself. Its text is fixed or given by
// hawser (a route's Unavailable reason), never taken from an upstream or an
// error, so internal addresses cannot leak into it.
type page struct {
	Code       int
	Title      string
	Message    string
	RetryAfter int // seconds; 0 sends no Retry-After
}

func newPage(code int, message string) page {
	return page{Code: code, Title: http.StatusText(code), Message: message}
}

var (
	pageNotFound       = newPage(http.StatusNotFound, "No site is served at this address.")
	pageBadGateway     = newPage(http.StatusBadGateway, "The site is not answering right now. Please try again in a moment.")
	pageGatewayTimeout = newPage(http.StatusGatewayTimeout, "The site took too long to answer. Please try again in a moment.")
	pageTooLarge       = newPage(http.StatusRequestEntityTooLarge, "The request body is larger than this site accepts.")
)

func pageUnavailable(reason string, retryAfter time.Duration) page {
	pg := newPage(http.StatusServiceUnavailable, reason)
	pg.RetryAfter = max(1, int(retryAfter.Round(time.Second)/time.Second))
	return pg
}

// writePage answers with pg: an HTML page for clients that ask for HTML
// (browsers), one line of text for the others (curl, scripts, probes).
func writePage(w http.ResponseWriter, r *http.Request, pg page) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if pg.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(pg.RetryAfter))
	}
	body := []byte(fmt.Sprintf("%d %s: %s\n", pg.Code, pg.Title, pg.Message))
	contentType := "text/plain; charset=utf-8"
	if acceptsHTML(r.Header.Get("Accept")) {
		var buf bytes.Buffer
		if err := errorPage.Execute(&buf, pg); err == nil {
			body, contentType = buf.Bytes(), "text/html; charset=utf-8"
		}
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(pg.Code)
	// A failed write means the client is gone; there is no one left to tell.
	w.Write(body)
}

// acceptsHTML reports whether the Accept header names text/html with a
// non-zero quality. A bare */* does not count: curl sends it.
func acceptsHTML(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		media, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || (media != "text/html" && media != "application/xhtml+xml") {
			continue
		}
		if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q == 0 {
			continue
		}
		return true
	}
	return false
}

// Unavailable answers 503 with Retry-After: a page that reloads itself
// for browsers, a line of text for other clients. reason is shown to
// visitors.
func Unavailable(w http.ResponseWriter, r *http.Request, reason string, retryAfter time.Duration) {
	writePage(w, r, pageUnavailable(reason, retryAfter))
}

// AcceptsHTML reports whether the request comes from a browser, which
// gets pages instead of text.
func AcceptsHTML(r *http.Request) bool {
	return acceptsHTML(r.Header.Get("Accept"))
}
