package source

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshGitServer is an in-process SSH server on 127.0.0.1 that accepts one
// client key and runs git-upload-pack for exec requests.
type sshGitServer struct {
	addr    string
	hostKey ssh.PublicKey
}

func startSSHGit(t *testing.T, clientKey ssh.PublicKey) *sshGitServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown client key")
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveSSH(t, conn, cfg) })
		}
	})
	return &sshGitServer{addr: ln.Addr().String(), hostKey: hostSigner.PublicKey()}
}

func serveSSH(t *testing.T, conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return // rejected handshakes are what some tests expect
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		serveSession(t, ch, chReqs)
	}
}

func serveSession(t *testing.T, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(req.Type == "env", nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		repoPath, ok := strings.CutPrefix(payload.Command, "git-upload-pack ")
		if !ok {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		status := runUploadPack(t, ch, strings.Trim(repoPath, "'"))
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func runUploadPack(t *testing.T, ch ssh.Channel, repoPath string) uint32 {
	cmd := exec.Command("git-upload-pack", repoPath)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Error(err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return 1
	}
	// Not waited for: the client may keep the channel open after the
	// process is done, and closing the channel ends this copy.
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		return 1
	}
	return 0
}

// clientKey writes an unencrypted ed25519 key file and returns its path
// and public key.
func clientKey(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return path, sshPub
}

func writeKnownHosts(t *testing.T, addr string, key ssh.PublicKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSSHFetchVerifiesHostKeyWithKnownHosts(t *testing.T) {
	remote := newRemote(t)
	head := remote.commit(map[string]string{"v": "over ssh"})
	keyFile, pub := clientKey(t)
	srv := startSSHGit(t, pub)
	url := "ssh://git@" + srv.addr + remote.dir

	_, otherPub := clientKey(t) // any key that is not the server's

	t.Run("matching known_hosts", func(t *testing.T) {
		repo := newRepo(t, url, Auth{SSHKeyFile: keyFile, KnownHostsFile: writeKnownHosts(t, srv.addr, srv.hostKey)})
		refs, err := repo.LsRemote(testContext(t))
		if err != nil || refs.Branches["main"] != head || refs.Default != "main" {
			t.Fatalf("ls-remote = %+v, %v", refs, err)
		}
		co, err := repo.Checkout(testContext(t), "main", head)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, filepath.Join(co.Current, "v")); got != "over ssh" {
			t.Fatalf("v = %q", got)
		}
	})
	t.Run("host missing from known_hosts", func(t *testing.T) {
		kh := writeKnownHosts(t, "127.0.0.1:1", srv.hostKey)
		repo := newRepo(t, url, Auth{SSHKeyFile: keyFile, KnownHostsFile: kh})
		_, err := repo.LsRemote(testContext(t))
		if err == nil || !strings.Contains(err.Error(), "host key") || !strings.Contains(err.Error(), "not in "+kh) {
			t.Fatalf("err = %v; want an unknown host key error naming %s", err, kh)
		}
	})
	t.Run("different key in known_hosts", func(t *testing.T) {
		repo := newRepo(t, url, Auth{SSHKeyFile: keyFile, KnownHostsFile: writeKnownHosts(t, srv.addr, otherPub)})
		_, err := repo.Checkout(testContext(t), "main", head)
		if err == nil || !strings.Contains(err.Error(), "host key") || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("err = %v; want a changed host key error", err)
		}
	})
}

func TestSSHWithoutKnownHostsAsksForHawserGitKnownHosts(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/known_hosts
	keyFile, _ := clientKey(t)
	dir := t.TempDir()
	for _, url := range []string{"git@127.0.0.1:org/repo.git", "ssh://git@127.0.0.1:2222/org/repo.git"} {
		_, err := New(url, Auth{SSHKeyFile: keyFile}, filepath.Join(dir, "c"), filepath.Join(dir, "o"), testLogger(t))
		if err == nil || !strings.Contains(err.Error(), knownHostsEnv) {
			t.Fatalf("New(%s) = %v; want an error telling the user to set %s", url, err, knownHostsEnv)
		}
	}
	_, err := New("git@127.0.0.1:org/repo.git", Auth{SSHKeyFile: keyFile, KnownHostsFile: filepath.Join(dir, "missing")},
		filepath.Join(dir, "c"), filepath.Join(dir, "o"), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("New with a missing known_hosts file = %v", err)
	}
}

func TestSSHUsesHomeKnownHostsByDefault(t *testing.T) {
	remote := newRemote(t)
	head := remote.commit(map[string]string{"v": "1"})
	keyFile, pub := clientKey(t)
	srv := startSSHGit(t, pub)
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(writeKnownHosts(t, srv.addr, srv.hostKey), filepath.Join(home, ".ssh", "known_hosts")); err != nil {
		t.Fatal(err)
	}
	repo := newRepo(t, "ssh://git@"+srv.addr+remote.dir, Auth{SSHKeyFile: keyFile})
	refs, err := repo.LsRemote(testContext(t))
	if err != nil || refs.Branches["main"] != head {
		t.Fatalf("ls-remote = %+v, %v", refs, err)
	}
}
