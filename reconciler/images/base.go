package images

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-containerregistry/pkg/name"
)

// BaseImages returns the images from registries that svc's Dockerfile (its
// file, relative to the build context, or its dockerfile_inline) builds
// FROM, in order and each once: not scratch, not earlier stages, and with
// the ARGs declared before the first FROM substituted from the service's
// build args and the ARG defaults. With a build target, the stages after it
// are not built and do not count. A service without a build section has
// none. Errors name the Dockerfile and the line.
//
// COPY --from=<image> is not looked at: only FROM lines count.
func BaseImages(svc types.ServiceConfig) ([]string, error) {
	if svc.Build == nil {
		return nil, nil
	}
	path, content, err := readDockerfile(*svc.Build)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	refs, err := scanBases(path, content, setArgs(svc.Build.Args), svc.Build.Target)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	return refs, nil
}

// readDockerfile returns the Dockerfile's name for errors and its content.
func readDockerfile(b types.BuildConfig) (string, []byte, error) {
	if b.DockerfileInline != "" {
		return "dockerfile_inline", []byte(b.DockerfileInline), nil
	}
	content, err := os.ReadFile(dockerfilePath(b))
	if err != nil {
		return "", nil, fmt.Errorf("dockerfile: %w", err)
	}
	return dockerfilePath(b), content, nil
}

// scanBases reads the FROM lines of the Dockerfile at path.
func scanBases(path string, content []byte, buildArgs map[string]*string, target string) ([]string, error) {
	s := baseScan{buildArgs: buildArgs, meta: map[string]string{}, stages: map[string]bool{}, seen: map[string]bool{}}
	target = strings.ToLower(target)
	for _, in := range scanDockerfile(string(content)) {
		stage, err := s.instruction(in)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, in.line, err)
		}
		if target != "" && stage == target {
			return s.refs, nil
		}
	}
	if target != "" {
		return nil, fmt.Errorf("%s: build target %q is not a stage", path, target)
	}
	return s.refs, nil
}

// baseScan is what scanBases learns line by line.
type baseScan struct {
	buildArgs map[string]*string
	meta      map[string]string // ARGs before the first FROM that have a value
	inStage   bool              // a FROM was seen
	stages    map[string]bool   // stage names so far, lower case
	seen      map[string]bool   // base images so far, by full name
	refs      []string
}

// instruction takes in and returns the name of the stage it starts, if any.
func (s *baseScan) instruction(in instruction) (string, error) {
	switch {
	case in.keyword == "arg" && !s.inStage:
		return "", s.declare(in.args)
	case in.keyword == "from":
		s.inStage = true
		return s.from(in.args)
	}
	return "", nil
}

// declare records ARG name[=default] ...: a build arg wins over the
// default, and a default may use the ARGs before it.
func (s *baseScan) declare(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("ARG needs a name")
	}
	for _, arg := range args {
		key, def, hasDefault := strings.Cut(arg, "=")
		if v := s.buildArgs[key]; v != nil {
			s.meta[key] = *v
			continue
		}
		if !hasDefault {
			continue
		}
		value, err := s.expand(unquote(def))
		if err != nil {
			return fmt.Errorf("ARG %s: %w", arg, err)
		}
		s.meta[key] = value
	}
	return nil
}

// from records FROM [--flag...] image [AS name] and returns the stage name.
func (s *baseScan) from(args []string) (string, error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		args = args[1:] // --platform: the engine picks the platform, not the ref
	}
	var image, stage string
	switch {
	case len(args) == 1:
		image = args[0]
	case len(args) == 3 && strings.EqualFold(args[1], "as"):
		image, stage = args[0], strings.ToLower(args[2])
	default:
		return "", fmt.Errorf("FROM needs an image and optionally AS name, got %q", strings.Join(args, " "))
	}
	ref, err := s.expand(image)
	if err != nil {
		return "", fmt.Errorf("FROM %s: %w", image, err)
	}
	if err := s.add(image, ref); err != nil {
		return "", err
	}
	if stage != "" {
		s.stages[stage] = true
	}
	return stage, nil
}

// add records ref, FROM's image after substitution, unless it is scratch,
// an earlier stage or already there.
func (s *baseScan) add(image, ref string) error {
	if ref == "" {
		return fmt.Errorf("FROM %s: the image is empty (an ARG without a value?)", image)
	}
	if strings.EqualFold(ref, "scratch") || s.stages[strings.ToLower(ref)] {
		return nil
	}
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("FROM %s: %w", image, err)
	}
	if !s.seen[parsed.Name()] {
		s.seen[parsed.Name()] = true
		s.refs = append(s.refs, ref)
	}
	return nil
}

// expand substitutes the meta ARGs in word, with the same forms as the
// Dockerfile's ($A, ${A}, ${A:-default}, ${A:+alternative}, ...).
func (s *baseScan) expand(word string) (string, error) {
	return template.SubstituteWithOptions(word, func(key string) (string, bool) {
		v, ok := s.meta[key]
		return v, ok
	}, template.WithoutLogging)
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// instruction is one Dockerfile instruction, its continuation lines joined.
type instruction struct {
	line    int    // where it starts, from 1
	keyword string // lower case
	args    []string
}

// directive is a parser directive ("# escape=`"), only valid at the top.
var directive = regexp.MustCompile(`^#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*?)\s*$`)

// scanDockerfile splits a Dockerfile into instructions as far as FROM and
// ARG need: the escape directive, comments, blank lines and line
// continuations (which may span comments and blank lines). Heredocs are
// not recognised; the classic builder hawser uses does not support them.
func scanDockerfile(content string) []instruction {
	lines := strings.Split(content, "\n")
	escape, n := directives(lines)
	var out []instruction
	var text strings.Builder
	start, continuing := 0, false
	for ; n < len(lines); n++ {
		line := strings.TrimSpace(lines[n])
		if line == "" || line[0] == '#' {
			continue
		}
		if !continuing {
			start = n + 1
		}
		body, more := strings.CutSuffix(line, escape)
		text.WriteString(body)
		if continuing = more; more {
			continue
		}
		out = appendInstruction(out, start, text.String())
		text.Reset()
	}
	return appendInstruction(out, start, text.String())
}

func appendInstruction(out []instruction, line int, text string) []instruction {
	words := strings.Fields(text)
	if len(words) == 0 {
		return out
	}
	return append(out, instruction{line: line, keyword: strings.ToLower(words[0]), args: words[1:]})
}

// directives reads the parser directives at the top of a Dockerfile and
// returns its escape character and the index of the first line after them.
func directives(lines []string) (string, int) {
	escape := `\`
	for n, line := range lines {
		m := directive.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			return escape, n
		}
		if strings.EqualFold(m[1], "escape") && (m[2] == "`" || m[2] == `\`) {
			escape = m[2]
		}
	}
	return escape, len(lines)
}
