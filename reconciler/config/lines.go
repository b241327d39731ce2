package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/template"
)

// dotenv reports values but not where they were set. These patterns only
// find the line a key is assigned on; parsing stays dotenv's job.
var (
	assignmentRe = regexp.MustCompile(`^\s*(?:export\s+)?([\p{L}\p{N}_.\[\]-]+)\s*([=:]|$)`)
	dotenvLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// keyLines says on which line each key is assigned (the last assignment, as
// dotenv keeps the last value) and which keys stand alone on a line, which
// dotenv takes to mean "inherit from the environment".
type keyLines struct {
	lines    []string
	assigned map[string]int
	bare     map[string]int
}

func scanLines(data []byte) keyLines {
	text := string(bytes.TrimPrefix(data, []byte("\uFEFF")))
	kl := keyLines{
		lines:    strings.Split(text, "\n"),
		assigned: map[string]int{},
		bare:     map[string]int{},
	}
	for i, line := range kl.lines {
		m := assignmentRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] == "" {
			kl.bare[m[1]] = i + 1
		} else {
			kl.assigned[m[1]] = i + 1
		}
	}
	return kl
}

// line is where key is assigned, or 0 if it is not in the file.
func (kl keyLines) line(key string) int {
	return kl.assigned[key]
}

// firstContaining is the first line containing needle, or 0.
func (kl keyLines) firstContaining(needle string) int {
	if needle == "" {
		return 0
	}
	for i, line := range kl.lines {
		if strings.Contains(line, needle) {
			return i + 1
		}
	}
	return 0
}

// lastEndingWith is the last line at or before limit ending with suffix, or
// limit when there is none.
func (kl keyLines) lastEndingWith(suffix string, limit int) int {
	for i := min(limit, len(kl.lines)) - 1; i >= 0 && suffix != ""; i-- {
		if strings.HasSuffix(strings.TrimRight(kl.lines[i], " \t\r"), suffix) {
			return i + 1
		}
	}
	return limit
}

// syntaxError turns an error from the dotenv parser into one that names the
// file and, where it can be found, the line. dotenv's messages quote the
// offending text, which may be a secret value, so only their kind is kept.
func syntaxError(file string, kl keyLines, err error) *Error {
	e := &Error{File: file}
	var missing *template.MissingRequiredError
	var invalid *template.InvalidTemplateError
	switch {
	case errors.As(err, &missing):
		e.Msg = fmt.Sprintf("required variable %s is missing a value", missing.Variable)
		e.Line = kl.firstContaining("${" + missing.Variable + ":?")
		if e.Line == 0 {
			e.Line = kl.firstContaining("${" + missing.Variable + "?")
		}
	case errors.As(err, &invalid):
		e.Msg = "invalid ${...} variable reference"
		first, _, _ := strings.Cut(invalid.Template, "\n")
		e.Line = kl.firstContaining(first)
	default:
		e.Line, e.Msg = dotenvMessage(kl, err.Error())
	}
	return e
}

func dotenvMessage(kl keyLines, msg string) (int, string) {
	line := 0
	if m := dotenvLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	switch {
	case strings.HasPrefix(msg, "unterminated quoted value "):
		// dotenv counts to the end of the file; the quote opened on the
		// last line before that which ends with the quoted text's start.
		start := strings.TrimRight(strings.TrimPrefix(msg, "unterminated quoted value "), " \t\r")
		return kl.lastEndingWith(start, line), "unterminated quoted value"
	case strings.HasPrefix(msg, "unexpected character "):
		char, _, _ := strings.Cut(msg, " in variable name")
		return line, char + " in a variable name"
	case msg == "key cannot contain a space":
		return line, msg
	default:
		return line, "syntax error"
	}
}
