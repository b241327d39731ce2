package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeKeyTableMatchesTheCode keeps the README's table of keys in step
// with Keys: a key added, renamed, re-defaulted or re-described in the code
// fails here until the table says the same. On failure it prints the table
// to paste.
func TestReadmeKeyTableMatchesTheCode(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- keys: begin -->\n", "<!-- keys: end -->"
	_, rest, ok := strings.Cut(string(data), begin)
	table, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("README.md has no %q ... %q section", strings.TrimSpace(begin), end)
	}
	if want := keyTable(); table != want {
		t.Errorf("README.md's key table differs from the keys the code accepts; replace it with:\n\n%s", want)
	}
}

// keyTable renders Keys as the README's markdown table.
func keyTable() string {
	var b strings.Builder
	b.WriteString("| key | default | what it does |\n|---|---|---|\n")
	for _, k := range Keys() {
		def := "(empty)"
		if k.Default != "" {
			def = "`" + k.Default + "`"
		}
		desc := strings.ReplaceAll(k.Description, "|", `\|`)
		b.WriteString("| `" + k.Name + "` | " + def + " | " + desc + " |\n")
	}
	return b.String()
}
