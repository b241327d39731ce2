// Package store keeps hawser's own records, its state: the history of
// deployments of each project, in an embedded bbolt database under the state
// directory.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Results of a deployment.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	// ResultRolledBack is a deployment whose new containers did not become
	// healthy: they were removed and the old ones kept serving.
	ResultRolledBack = "rolled back"
)

// Deployment is one attempt to bring a project to a commit and configuration.
type Deployment struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	Branch  string `json:"branch"`
	Commit  string `json:"commit"`
	// Subject is the first line of the commit's message.
	Subject string    `json:"subject,omitempty"`
	Trigger string    `json:"trigger"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Result  string    `json:"result"`
	// Reason says why the deployment failed; empty when it succeeded.
	Reason string `json:"reason,omitempty"`
	// Transient marks a failure that may pass by itself (the remote, a
	// registry or the engine was unavailable): the commit is retried.
	Transient bool `json:"transient,omitempty"`
	// Logs holds the last lines of a failed build or container. They can hold
	// an application's secrets: the API does not serve them.
	Logs string `json:"logs,omitempty"`
	// ConfigDigest identifies the host configuration the deployment used, so
	// a failed commit is retried when the configuration changes.
	ConfigDigest string `json:"config_digest"`
	// Services maps each recreated service to the reasons, one per replica.
	Services map[string][]string `json:"services,omitempty"`
	// Images maps each service to the image it runs.
	Images map[string]string `json:"images,omitempty"`
	// ImageIDs maps each service to the ID of that image, so images of old
	// deployments can be found after their tags moved on.
	ImageIDs map[string]string `json:"image_ids,omitempty"`
	// Updated maps the services whose image update a registry check found
	// to the new digest, so an update that failed is not tried again.
	Updated map[string]string `json:"updated,omitempty"`
	// BuildLogs maps each built service to its build log file.
	BuildLogs map[string]string `json:"build_logs,omitempty"`
}

// Store is an open database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens or creates the database file.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: locked by another process: is another hawser running on this state dir?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func bucketName(project string) []byte { return []byte("deployments/" + project) }

// NextID reserves the ID of a new deployment of the project.
func (s *Store) NextID(project string) (string, error) {
	var id uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName(project))
		if err != nil {
			return err
		}
		id, err = b.NextSequence()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store: next deployment id: %w", err)
	}
	return strconv.FormatUint(id, 10), nil
}

// Save writes a deployment, replacing an earlier version of it.
func (s *Store) Save(d Deployment) error {
	n, err := strconv.ParseUint(d.ID, 10, 64)
	if err != nil {
		return fmt.Errorf("store: deployment id %q: %w", d.ID, err)
	}
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName(d.Project))
		if err != nil {
			return err
		}
		return b.Put(key(n), v)
	})
	if err != nil {
		return fmt.Errorf("store: save deployment %s: %w", d.ID, err)
	}
	return nil
}

func key(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}

// List returns up to limit deployments of the project, newest first.
func (s *Store) List(project string, limit int) ([]Deployment, error) {
	var out []Deployment
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(project))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var d Deployment
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("deployment %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list deployments: %w", err)
	}
	return out, nil
}

// ErrNone says the project has no deployment yet.
var ErrNone = errors.New("no deployment yet")

// Last returns the newest deployment of the project.
func (s *Store) Last(project string) (Deployment, error) {
	list, err := s.List(project, 1)
	if err != nil {
		return Deployment{}, err
	}
	if len(list) == 0 {
		return Deployment{}, ErrNone
	}
	return list[0], nil
}

func followedBucket(project string) []byte { return []byte("followed/" + project) }

// Follow is the tag a semver policy moved a service to, and the tag the
// compose file named when it did: a new tag in the file ends the follow.
type Follow struct {
	Ref  string `json:"ref"`
	From string `json:"from"`
}

// Followed returns the tags semver policies moved services to, by service.
func (s *Store) Followed(project string) (map[string]Follow, error) {
	out := map[string]Follow{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(followedBucket(project))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var f Follow
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("service %s: %w", k, err)
			}
			out[string(k)] = f
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: followed images: %w", err)
	}
	return out, nil
}

// SetFollowed remembers the tag a semver policy moved a service to, once
// it deployed, so a restart keeps following it.
func (s *Store) SetFollowed(project, service string, f Follow) error {
	v, err := json.Marshal(f)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(followedBucket(project))
		if err != nil {
			return err
		}
		return b.Put([]byte(service), v)
	})
	if err != nil {
		return fmt.Errorf("store: follow %s: %w", f.Ref, err)
	}
	return nil
}

// Pin holds a project's automatic updates: while Paused, no new commit or
// image is deployed; with a Commit, that commit is kept running.
type Pin struct {
	Paused bool      `json:"paused"`
	Commit string    `json:"commit,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// Images maps services to the image IDs of the deployment rolled back
	// to: a tag may have moved on since.
	Images map[string]string `json:"images,omitempty"`
}

func pinKey(project string) []byte { return []byte(project) }

var pinBucket = []byte("pins")

// Pin returns the project's pin; the zero Pin when there is none.
func (s *Store) Pin(project string) (Pin, error) {
	var p Pin
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(pinBucket)
		if b == nil {
			return nil
		}
		if v := b.Get(pinKey(project)); v != nil {
			return json.Unmarshal(v, &p)
		}
		return nil
	})
	if err != nil {
		return Pin{}, fmt.Errorf("store: pin of %s: %w", project, err)
	}
	return p, nil
}

// SetPin saves the project's pin; the zero Pin removes it.
func (s *Store) SetPin(project string, p Pin) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(pinBucket)
		if err != nil {
			return err
		}
		if !p.Paused && p.Commit == "" {
			return b.Delete(pinKey(project))
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Put(pinKey(project), v)
	})
	if err != nil {
		return fmt.Errorf("store: pin %s: %w", project, err)
	}
	return nil
}

// Deployment returns one deployment of the project by ID.
func (s *Store) Deployment(project, id string) (Deployment, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return Deployment{}, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	var d Deployment
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName(project))
		if b == nil {
			return ErrNotFound
		}
		v := b.Get(key(n))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &d)
	})
	if err != nil {
		return Deployment{}, fmt.Errorf("deployment %s: %w", id, err)
	}
	return d, nil
}

// ErrNotFound says there is no such record.
var ErrNotFound = errors.New("not found")

var previewBucket = []byte("previews")

// PreviewRecord is the inventory entry of one branch preview.
type PreviewRecord struct {
	Branch string `json:"branch"`
	// Commit is the branch's head when it last changed, at Changed.
	Commit  string    `json:"commit"`
	Changed time.Time `json:"changed"`
	// Expired previews were torn down after HAWSER_PREVIEW_TTL without a
	// push; a new push brings them back.
	Expired bool `json:"expired,omitempty"`
	// Pinned previews serve one commit (c-<commit12>) rather than the
	// branch's head; Branch is the watched branch that holds it.
	Pinned bool `json:"pinned,omitempty"`
	// Asleep previews have their containers stopped and their hosts (host
	// to service) answered by a wake handler, also after a restart.
	Asleep bool              `json:"asleep,omitempty"`
	Hosts  map[string]string `json:"hosts,omitempty"`
}

// Previews returns the inventory of a project's previews, by slug: those
// that exist or may still have something to tear down.
func (s *Store) Previews(project string) (map[string]PreviewRecord, error) {
	out := map[string]PreviewRecord{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(previewBucket)
		if b == nil {
			return nil
		}
		pb := b.Bucket([]byte(project))
		if pb == nil {
			return nil
		}
		return pb.ForEach(func(k, v []byte) error {
			var rec PreviewRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("preview %s: %w", k, err)
			}
			out[string(k)] = rec
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: previews of %s: %w", project, err)
	}
	return out, nil
}

// SetPreview records a preview of a project; nil removes it once it is
// torn down.
func (s *Store) SetPreview(project, slug string, rec *PreviewRecord) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(previewBucket)
		if err != nil {
			return err
		}
		pb, err := b.CreateBucketIfNotExists([]byte(project))
		if err != nil {
			return err
		}
		if rec == nil {
			return pb.Delete([]byte(slug))
		}
		return putJSON(pb, slug, rec)
	})
	if err != nil {
		return fmt.Errorf("store: preview %s: %w", slug, err)
	}
	return nil
}

// UpdatePreview changes the record of a preview in one transaction; a
// preview without a record is left without one.
func (s *Store) UpdatePreview(project, slug string, update func(*PreviewRecord)) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(previewBucket)
		if pb != nil {
			pb = pb.Bucket([]byte(project))
		}
		if pb == nil || pb.Get([]byte(slug)) == nil {
			return nil
		}
		var rec PreviewRecord
		if err := json.Unmarshal(pb.Get([]byte(slug)), &rec); err != nil {
			return err
		}
		update(&rec)
		return putJSON(pb, slug, rec)
	})
	if err != nil {
		return fmt.Errorf("store: preview %s: %w", slug, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// DeleteProject forgets a project's records: its deployments, followed
// tags and pin. It is for projects that are gone for good, such as a torn
// down preview.
func (s *Store) DeleteProject(project string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketName(project), followedBucket(project)} {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		if pins := tx.Bucket(pinBucket); pins != nil {
			return pins.Delete(pinKey(project))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete %s: %w", project, err)
	}
	return nil
}
