package config

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
)

const examplePath = "../../.env.example"

func TestEnvExampleParsesCleanly(t *testing.T) {
	cfg, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "examples/hello" || !strings.HasSuffix(cfg.File, ".env.example") {
		t.Errorf("the example deploys %q from %q, want examples/hello from this repository", cfg.Path, cfg.Repo)
	}
}

func TestEnvExampleDocumentsExactlyTheKeys(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	values, err := dotenv.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for k := range values {
		if isHawserKey(k) {
			documented = append(documented, k)
		}
	}
	var names []string
	for _, k := range Keys() {
		names = append(names, k.Name)
	}
	for _, k := range documented {
		if !slices.Contains(names, k) {
			t.Errorf(".env.example documents %s, which is not a key", k)
		}
	}
	kl := scanLines(data)
	previous := 0
	for _, k := range Keys() {
		line := kl.line(k.Name)
		if line == 0 {
			t.Errorf(".env.example does not document %s", k.Name)
			continue
		}
		if line < previous {
			t.Errorf(".env.example documents %s out of the table's order", k.Name)
		}
		previous = line
		if values[k.Name] != k.Default {
			t.Errorf(".env.example sets %s=%s, want its default %q", k.Name, values[k.Name], k.Default)
		}
		if comment := kl.lines[line-2]; comment != "# "+k.Description {
			t.Errorf(".env.example line %d: the comment above %s is %q, want %q", line-1, k.Name, comment, "# "+k.Description)
		}
	}
}
