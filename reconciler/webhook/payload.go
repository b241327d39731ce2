package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Event is a push to a branch, as its sender reports it.
type Event struct {
	// Provider is the endpoint that received it: GitHub, GitLab, Gitea or
	// Generic.
	Provider string
	// Delivery is the sender's id of this delivery; empty when it sends
	// none.
	Delivery string
	// Ref is the full ref name; refs/heads/<Branch> for a branch.
	Ref string
	// Branch is the branch pushed to; empty for a tag or another ref.
	Branch string
	// After is the commit the branch points at now, as the sender claims;
	// empty when the branch was deleted or the sender did not say.
	After string
	// Deleted says the branch was deleted.
	Deleted bool
}

// kind is an event hawser reads.
type kind int

const (
	kindPush kind = iota + 1
	kindDelete
	kindPing
)

// pushPayload is the part of a push that hawser reads; GitHub, GitLab,
// Gitea, Forgejo, Gogs and the generic format agree on these names.
type pushPayload struct {
	Ref     string `json:"ref"`
	After   string `json:"after"`
	Deleted bool   `json:"deleted"`
}

// deletePayload is a delete event of GitHub, Gitea, Forgejo or Gogs; ref is
// the short name of the branch or tag.
type deletePayload struct {
	Ref     string `json:"ref"`
	RefType string `json:"ref_type"`
}

// decode reads the body of a push or delete event.
func decode(k kind, body []byte) (Event, error) {
	if k == kindDelete {
		return decodeDelete(body)
	}
	return decodePush(body)
}

func decodePush(body []byte) (Event, error) {
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, jsonError(err)
	}
	if p.After != "" && !isCommitID(p.After) {
		return Event{}, fmt.Errorf(`"after" %.80q is not a commit id (40 or 64 hex digits)`, p.After)
	}
	ev, err := refEvent(p.Ref)
	if err != nil {
		return Event{}, err
	}
	// A deletion moves the ref to the all-zero object name; GitHub and the
	// generic format also say "deleted".
	if p.Deleted || (p.After != "" && strings.Trim(p.After, "0") == "") {
		ev.Deleted, p.After = true, ""
	}
	ev.After = p.After
	return ev, nil
}

func decodeDelete(body []byte) (Event, error) {
	var p deletePayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, jsonError(err)
	}
	if p.Ref == "" {
		return Event{}, errors.New(`"ref" is missing: a delete event names the deleted branch`)
	}
	var full string
	switch p.RefType {
	case "branch":
		full = "refs/heads/" + strings.TrimPrefix(p.Ref, "refs/heads/")
	case "tag":
		full = "refs/tags/" + strings.TrimPrefix(p.Ref, "refs/tags/")
	default:
		return Event{}, fmt.Errorf(`"ref_type" %.32q is neither "branch" nor "tag"`, p.RefType)
	}
	ev, err := refEvent(full)
	ev.Deleted = true
	return ev, err
}

// refEvent reads a full ref name, or takes a bare name for a branch.
func refEvent(ref string) (Event, error) {
	if ref == "" {
		return Event{}, errors.New(`"ref" is missing: a push names the ref it moved, for example "refs/heads/main"`)
	}
	branch, ok := strings.CutPrefix(ref, "refs/heads/")
	switch {
	case ok && branch == "":
		return Event{}, fmt.Errorf(`"ref" %.80q names no branch`, ref)
	case ok:
		return Event{Ref: ref, Branch: branch}, nil
	case strings.HasPrefix(ref, "refs/"):
		return Event{Ref: ref}, nil
	}
	return Event{Ref: "refs/heads/" + ref, Branch: ref}, nil
}

// isCommitID accepts SHA-1 and SHA-256 object names.
func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// jsonError says where and how a body is not the JSON expected, in the
// payload's terms rather than Go's.
func jsonError(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("not JSON at byte %d: %v", se.Offset, se)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field == "" {
			return fmt.Errorf("a JSON object is expected, not %s", te.Value)
		}
		return fmt.Errorf("%q is %s, not %s", te.Field, te.Value, te.Type)
	}
	return fmt.Errorf("not JSON: %w", err)
}
