package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
)

// tailBytes bounds the output a tail keeps.
const tailBytes = 16 << 10

// copyStream writes the text of an engine's JSON message stream to out and
// returns the error the stream reports, if any.
func copyStream(r io.Reader, out io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if m.Error != nil {
			return m.Error
		}
		if err := writeMessage(out, m); err != nil {
			return err
		}
	}
}

// writeMessage writes a message's text; progress bars and aux records (the
// image ID, which Ensure inspects anyway) carry nothing worth logging.
func writeMessage(out io.Writer, m jsonstream.Message) error {
	var err error
	switch {
	case m.Stream != "":
		_, err = io.WriteString(out, m.Stream)
	case m.Status != "" && m.Progress == nil:
		if m.ID != "" {
			_, err = fmt.Fprintf(out, "%s: %s\n", m.ID, m.Status)
		} else {
			_, err = fmt.Fprintln(out, m.Status)
		}
	}
	return err
}

// tail keeps the end of what is written to it.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lines returns the last n complete or partial lines kept.
func (t *tail) lines(n int) []string {
	lines := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	return lines[max(0, len(lines)-n):]
}
