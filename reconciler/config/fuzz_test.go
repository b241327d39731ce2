package config

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
)

// FuzzParse checks that no input panics, that every problem names the
// file, and that whatever parses is usable.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		"",
		string(example),
		"HAWSER_SCHEDUL=@every 10s\nhawser_path=x\n",
		"HAWSER_SCHEDULE=TZ=UTC\n",
		"HAWSER_SCHEDULE=CRON_TZ=Europe/Berlin 0 3 * * *\n",
		"HAWSER_REPO=git@example.com:team/shop.git\nHAWSER_PATH=.\n",
		"HAWSER_REPO=https://bot:pw@example.com/shop.git\n",
		"HAWSER_PATH=../../etc\nHAWSER_COMPOSE_FILES=a.yml,,/b.yml\n",
		"A=\"open\nB=2\n",
		"A=${B:?missing}\n",
		"A=pre${\n",
		"my$key=1\n",
		"some key=1\n",
		"LEAKED\n",
		"\uFEFFexport HAWSER_LOG_LEVEL: debug\r\nHAWSER_KEEP_CHECKOUTS=0\r\n",
		"HAWSER_PROJECT=${X:-My App}\nHAWSER_HEALTH_TIMEOUT=-1s\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.env"
		cfg, err := Parse(file, data, dir)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			for _, e := range es {
				if e.File != file || !strings.HasPrefix(e.Error(), file+":") {
					t.Errorf("problem does not name the file: %q", e.Error())
				}
			}
			return
		}
		if cfg.Schedule == nil || cfg.Project == "" || loader.NormalizeProjectName(cfg.Project) != cfg.Project {
			t.Errorf("parsed but unusable: schedule %v, project %q", cfg.Schedule, cfg.Project)
		}
	})
}
