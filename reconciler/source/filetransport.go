package source

import (
	"context"
	"errors"
	"os/exec"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
)

// go-git serves file:// remotes by running git-upload-pack, which hawser's
// own container image (FROM scratch) does not have. Where neither that nor
// git is on PATH, go-git's in-process server reads the repository instead,
// so a repository mounted into the container still works.
func init() { serveFileInProcessWithoutGit() }

// serveFileInProcessWithoutGit installs the in-process file transport when
// go-git's own one would find no git to run. The choice is process-wide, as
// go-git's transports are.
func serveFileInProcessWithoutGit() {
	for _, bin := range []string{transport.UploadPackServiceName, "git"} {
		if _, err := exec.LookPath(bin); err == nil {
			return
		}
	}
	client.InstallProtocol("file", inProcessFile{server.NewClient(repoLoader{})})
}

// repoLoader opens a repository as git itself would: a work tree's .git
// (directory or gitdir file) or a bare repository. go-git's DefaultLoader
// reads a work tree's root as if it were the git directory.
type repoLoader struct{}

func (repoLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	repo, err := git.PlainOpen(ep.Path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, transport.ErrRepositoryNotFound
	}
	if err != nil {
		return nil, err
	}
	return repo.Storer, nil
}

// inProcessFile is go-git's in-process server as a client transport.
type inProcessFile struct{ transport.Transport }

func (f inProcessFile) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	s, err := f.Transport.NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, err
	}
	return wholeHistory{s}, nil
}

// wholeHistory drops the depth from a fetch: the in-process server refuses
// shallow requests. Sending the whole history costs little for a repository
// on the same disk, and the cache stays consistent: it only gains objects.
type wholeHistory struct{ transport.UploadPackSession }

func (s wholeHistory) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	req.Depth = packp.DepthCommits(0)
	req.Shallows = nil
	req.Capabilities.Delete(capability.Shallow)
	return s.UploadPackSession.UploadPack(ctx, req)
}
