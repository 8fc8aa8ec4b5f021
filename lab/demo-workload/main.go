// Command demo-workload is the lab's demo workload: a process that gets its
// identity from the local SPIRE agent and proves it with mTLS across the
// overlay. The lab builds it with the tools (scripts/install-tools.sh), installs
// it on a node as one file (lab/lab.ts), and a provisioning input names it like
// any other workload program (lab/inputs.ts): the worker knows nothing of it.
//
//	demo-workload serve --dir D (--listen IP:PORT | --in-cidr CIDR --port PORT) [--allow spiffe://...]...
//	    get an X.509-SVID (and each rotation the agent sends), serve mTLS on the
//	    address, or on this host's IPv4 address inside CIDR (the node's overlay
//	    address, whichever driver made the interface); answer callers whose
//	    SPIFFE ID is allowed, refuse the rest.
//	demo-workload call --dir D --connect IP:PORT --expect spiffe://...
//	    get an SVID, call a server over mTLS, require the server's SPIFFE ID,
//	    print the exchange as JSON (exit 0 ok, 1 refused, 2 usage). A failed
//	    call says where it failed in "stage": "dial" (no TCP connection; "code"
//	    is "ECONNREFUSED" when nothing listens there yet), "handshake" (mTLS: a
//	    certificate or SPIFFE ID refused, by either side) or "reply".
//
// Both: --socket S (default: SPIFFE_ENDPOINT_SOCKET), the agent's Workload API
// socket, spoken with go-spiffe. Each SVID is also kept in --dir as svid.0.pem,
// svid.0.key (0600) and bundle.0.pem, as `spire-agent api fetch -write` lays them
// out. --spire-agent PATH is accepted and ignored: commands recorded when the
// workload ran `spire-agent api fetch` still start.
//
// It runs as the workload's unix uid, so the agent's unix attestor decides which
// SVID it gets: nothing on the command line names its identity.
//
// It is a Go program, not a Node one, because a lab node runs one per workload:
// a Node process costs ~100 ms of CPU to start and ~48 MiB of memory, this one a
// few ms and a few MiB (bench/results/report.md, P2's workloads class).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// fetchDeadline bounds the wait for the first SVID: the entry may not have
// reached the agent yet ("no identity issued"), and it is asked again every
// retryEvery until then.
const (
	fetchDeadline = 60 * time.Second
	retryEvery    = 500 * time.Millisecond
	callTimeout   = 10 * time.Second
)

// usageError is a bad command line: exit 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// allowList is --allow, given any number of times.
type allowList []string

func (a *allowList) String() string     { return strings.Join(*a, ",") }
func (a *allowList) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-workload: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			code = 2
		} else {
			code = 1
		}
	}
	os.Exit(code)
}

func run(args []string) (int, error) {
	if len(args) == 0 || (args[0] != "serve" && args[0] != "call") {
		return 0, usageError(`first argument must be "serve" or "call"`)
	}
	mode := args[0]
	fs := flag.NewFlagSet("demo-workload "+mode, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", strings.TrimPrefix(os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "unix://"), "")
	dir := fs.String("dir", "", "")
	fs.String("spire-agent", "", "") // ignored (see the usage above)
	listen := fs.String("listen", "", "")
	inCidr := fs.String("in-cidr", "", "")
	port := fs.String("port", "", "")
	connect := fs.String("connect", "", "")
	expect := fs.String("expect", "", "")
	var allow allowList
	fs.Var(&allow, "allow", "")
	if err := fs.Parse(args[1:]); err != nil {
		return 0, usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return 0, usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if *socket == "" || *dir == "" {
		return 0, usageError("--socket (or SPIFFE_ENDPOINT_SOCKET) and --dir are required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	switch mode {
	case "serve":
		addr := *listen
		if addr == "" {
			if *inCidr == "" || *port == "" {
				return 0, usageError("serve needs --listen IP:PORT, or --in-cidr CIDR and --port PORT")
			}
			if _, err := strconv.ParseUint(*port, 10, 16); err != nil {
				return 0, usageError(fmt.Sprintf("--port %q is not a port number", *port))
			}
			ip, err := addressIn(*inCidr)
			if err != nil {
				return 0, err
			}
			addr = net.JoinHostPort(ip, *port)
		}
		err := serve(ctx, *socket, *dir, addr, allow)
		if ctx.Err() != nil {
			return 0, nil // SIGTERM, while it waited for its SVID or served: stopping is exiting
		}
		return 0, err
	default:
		if *connect == "" || *expect == "" {
			return 0, usageError("call needs --connect IP:PORT and --expect SPIFFE_ID")
		}
		want, err := spiffeid.FromString(*expect)
		if err != nil {
			return 0, usageError(fmt.Sprintf("--expect: %v", err))
		}
		return call(ctx, *socket, *dir, *connect, want)
	}
}

// constantBackoff asks the agent again every retryEvery: until the entry reaches
// the agent it answers "no identity issued" (go-spiffe's own backoff waits 1 s,
// 2 s, 3 s, ...).
type constantBackoff struct{}

func (constantBackoff) NewBackoff() workloadapi.Backoff { return constantBackoff{} }
func (constantBackoff) Next() time.Duration             { return retryEvery }
func (constantBackoff) Reset()                          {}

// quietLogger keeps go-spiffe's retry messages ("no identity issued", every
// retryEvery until the entry arrives) out of the workload's log.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}

// source watches the Workload API for this process's SVID: it returns once the
// first one has come (within fetchDeadline), and the agent sends each rotation
// on the same stream (src.Updated()).
func source(ctx context.Context, socket string) (*workloadapi.X509Source, error) {
	first, cancel := context.WithTimeoutCause(ctx, fetchDeadline,
		fmt.Errorf("no X.509-SVID from the Workload API at %s within %s", socket, fetchDeadline))
	defer cancel()
	src, err := workloadapi.NewX509Source(first, workloadapi.WithClientOptions(
		workloadapi.WithAddr("unix://"+socket),
		workloadapi.WithBackoffStrategy(constantBackoff{}),
		workloadapi.WithLogger(quietLogger{}),
	))
	if err != nil && first.Err() != nil {
		return nil, context.Cause(first)
	}
	return src, err
}

// keep writes the source's SVID and its trust domain's bundle into dir.
func keep(src *workloadapi.X509Source, dir string) (*x509svid.SVID, error) {
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	bundle, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return nil, err
	}
	certs, key, err := svid.Marshal()
	if err != nil {
		return nil, err
	}
	ca, err := bundle.Marshal()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{"svid.0.key", key, 0o600}, {"svid.0.pem", certs, 0o644}, {"bundle.0.pem", ca, 0o644}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return svid, nil
}

func logEvent(fields map[string]any) {
	fields["at"] = time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	line, _ := json.Marshal(fields)
	fmt.Println(string(line))
}

// addressIn is this host's IPv4 address inside cidr: the node's overlay address
// (the lab knows the overlay's range, not the address the ledger will allocate,
// nor who names the interface).
func addressIn(cidr string) (string, error) {
	_, inside, err := net.ParseCIDR(cidr)
	if err != nil {
		return "", usageError(fmt.Sprintf("--in-cidr: %v", err))
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && inside.Contains(n.IP) {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("no IPv4 address of this host is inside %s", cidr)
}

// peerID is the SPIFFE ID of the connection's verified peer certificate.
func peerID(conn *tls.Conn) (spiffeid.ID, bool) {
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := x509svid.IDFromCert(certs[0])
	return id, err == nil
}

func serve(ctx context.Context, socket, dir, addr string, allow []string) error {
	src, err := source(ctx, socket)
	if err != nil {
		return err
	}
	defer src.Close()
	svid, err := keep(src, dir)
	if err != nil {
		return err
	}
	logEvent(map[string]any{"event": "svid", "id": svid.ID.String(), "notAfter": svid.Certificates[0].NotAfter.UTC()})
	go func() {
		// The agent rotates the SVID (at half its lifetime) and sends it on the
		// watch stream; the TLS config reads the source on every handshake.
		for range src.Updated() {
			if s, err := keep(src, dir); err != nil {
				logEvent(map[string]any{"event": "rotate_failed", "error": err.Error()})
			} else {
				logEvent(map[string]any{"event": "rotated", "notAfter": s.Certificates[0].NotAfter.UTC()})
			}
		}
	}()

	// Any SVID of the trust domains the agent trusts completes the handshake; the
	// allow list is answered in the application, so a refused caller is told why.
	cfg := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	cfg.MinVersion = tls.VersionTLS13
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return err
	}
	logEvent(map[string]any{"event": "listening", "listen": addr})
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err // after SIGTERM too: run exits 0 then
		}
		go answer(c.(*tls.Conn), src, allow)
	}
}

// answer is the server's whole protocol: one JSON line naming both sides, or the refusal.
func answer(conn *tls.Conn, src *workloadapi.X509Source, allow []string) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(callTimeout))
	if err := conn.Handshake(); err != nil {
		return
	}
	var reply map[string]any
	caller, ok := peerID(conn)
	if own, err := src.GetX509SVID(); err == nil && ok && slices.Contains(allow, caller.String()) {
		logEvent(map[string]any{"event": "accepted", "caller": caller.String()})
		reply = map[string]any{"ok": true, "server": own.ID.String(), "client": caller.String()}
	} else {
		var refused any // null: no SPIFFE ID at all
		if ok {
			refused = caller.String()
		}
		logEvent(map[string]any{"event": "refused", "caller": refused})
		reply = map[string]any{"ok": false, "refused": refused, "reason": "SPIFFE ID not allowed"}
	}
	line, _ := json.Marshal(reply)
	_, _ = conn.Write(append(line, '\n'))
}

func call(ctx context.Context, socket, dir, connect string, expect spiffeid.ID) (int, error) {
	src, err := source(ctx, socket)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	svid, err := keep(src, dir)
	if err != nil {
		return 0, err
	}
	out := map[string]any{"client": svid.ID.String()}
	print := func() { line, _ := json.Marshal(out); fmt.Println(string(line)) }

	// SVIDs carry no DNS names: the identity to check is the URI SAN.
	cfg := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(expect))
	cfg.MinVersion = tls.VersionTLS13
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: callTimeout}, Config: cfg}
	dctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	fail := func(stage string, err error) (int, error) {
		out["stage"] = stage
		out["error"] = err.Error()
		if errors.Is(err, syscall.ECONNREFUSED) {
			out["code"] = "ECONNREFUSED"
		}
		print()
		return 1, nil
	}
	c, err := dialer.DialContext(dctx, "tcp", connect)
	if err != nil {
		// tls.Dialer returns the TCP dial's error as a *net.OpError with Op
		// "dial", and the handshake's as it is.
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fail("dial", err)
		}
		return fail("handshake", err)
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(callTimeout))
	body, err := io.ReadAll(conn)
	if err != nil {
		// TLS 1.3: the client's handshake ends before the server has checked the
		// client's certificate, so the server's refusal arrives here as an alert.
		return fail("reply", err)
	}
	if id, ok := peerID(conn); ok {
		out["server"] = id.String()
	} else {
		out["server"] = nil
	}
	reply := map[string]any{"ok": false}
	if s := strings.TrimSpace(string(body)); s != "" {
		if err := json.Unmarshal([]byte(s), &reply); err != nil {
			return fail("reply", fmt.Errorf("the server's reply is not JSON: %q", s))
		}
	}
	out["reply"] = reply
	print()
	if ok, _ := reply["ok"].(bool); ok {
		return 0, nil
	}
	return 1, nil
}
