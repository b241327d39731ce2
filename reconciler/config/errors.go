package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a configuration file. It never carries a secret
// value, so it is safe to print and log.
type Error struct {
	File string // the file as named to Load or Parse
	Line int    // 1-based; 0 when the problem is not on one line (a default, or the whole file)
	Key  string // empty for syntax errors
	Msg  string
	err  error // the underlying cause, for errors.Is; its text is never shown
}

// Error formats the problem as "file:line: KEY: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.err }

// Errors is every problem found in one file; Parse and Load return it so that
// `hawser validate` can print them all at once.
type Errors []*Error

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortByLine orders problems as they appear in the file; problems that are
// not on a line (defaults) come last, in table order.
func (es Errors) sortByLine() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Compare(lineOrder(a.Line), lineOrder(b.Line))
	})
}

func lineOrder(line int) int {
	if line == 0 {
		return int(^uint(0) >> 1)
	}
	return line
}

// suggest returns the known key nearest to key by edit distance, or "" when
// none is close enough to be a plausible typo.
func suggest(key string, known []string) string {
	key = strings.ToUpper(key)
	best, bestDist := "", -1
	for _, k := range known {
		if d := editDistance(key, k); bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	// Everything shares the HAWSER_ prefix, so judge closeness by the suffix.
	limit := max(2, len(strings.TrimPrefix(best, keyPrefix))/3)
	if bestDist < 0 || bestDist > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
