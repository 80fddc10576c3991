// Command pulumi-resource-command is kthw's own implementation of the part of Pulumi's command provider
// (github.com/pulumi/pulumi-command) that this project uses, for when the Go module proxy does not serve the
// upstream provider module (scripts/toolchain/build tries that first).
//
// Resource types, with the inputs and outputs of the pulumi-command Python SDK:
//
//	command:local:Command   create, update, delete, dir, environment, interpreter, stdin, triggers, logging,
//	                        addPreviousOutputInEnv -> stdout, stderr
//	command:remote:Command  connection{host, port, user, password, privateKey, privateKeyPassword,
//	                        agentSocketPath, dialErrorLimit, perDialTimeout, hostKey}, create, update, delete,
//	                        environment (needs the server's AcceptEnv), stdin, triggers, logging,
//	                        addPreviousOutputInEnv -> stdout, stderr
//	command:remote:CopyToRemote  connection, source (a file asset), remotePath, triggers: the file is written
//	                        to remotePath over an SSH session (to a temporary name, then renamed)
//
// Semantics follow upstream: a change to `triggers` replaces the resource; any other change updates it in
// place by running `update` (or `create` when there is no `update`); `delete` runs on delete with the last
// state; stdout and stderr are captured (trailing newline trimmed) and, unless `logging` says otherwise, also
// logged; PULUMI_COMMAND_STDOUT/STDERR carry the previous outputs unless addPreviousOutputInEnv is false; in a
// preview nothing runs. Not implemented (an error says so): assetPaths/archivePaths, connection.proxy,
// CopyToRemote from an archive or a remote asset, remote:CopyFile and the functions.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Version is set by the build (-X main.Version=...) to the pinned pulumi-command Python SDK's version.
var Version = "0.0.0"

const (
	localCommand  = "command:local:Command"
	remoteCommand = "command:remote:Command"
	copyToRemote  = "command:remote:CopyToRemote"
	envStdout     = "PULUMI_COMMAND_STDOUT"
	envStderr     = "PULUMI_COMMAND_STDERR"
)

func main() {
	for _, arg := range os.Args[1:] {
		if arg == "--version" || arg == "-version" {
			fmt.Println(Version)
			return
		}
	}
	err := provider.Main("command", func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		return &commandProvider{host: host}, nil
	})
	if err != nil {
		cmdutil.ExitError(err.Error())
	}
}

type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer
	host *provider.HostClient
}

var marshalOpts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, KeepResources: true, SkipNulls: true}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	return plugin.UnmarshalProperties(s, marshalOpts)
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

func resourceType(urn string) string {
	return string(resource.URN(urn).Type())
}

func checkType(urn string) error {
	switch t := resourceType(urn); t {
	case localCommand, remoteCommand, copyToRemote:
		return nil
	default:
		return fmt.Errorf("%s is not implemented by kthw's command provider (only %s, %s and %s are)",
			t, localCommand, remoteCommand, copyToRemote)
	}
}

// typedInputs refuses a resource type this provider does not implement, then unmarshals its properties.
func typedInputs(urn string, s *structpb.Struct) (resource.PropertyMap, error) {
	if err := checkType(urn); err != nil {
		return nil, err
	}
	return unmarshal(s)
}

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: Version}, nil
}

func (p *commandProvider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	return &pulumirpc.GetSchemaResponse{Schema: fmt.Sprintf(`{"name":"command","version":%q}`, Version)}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(context.Context, *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true, AcceptResources: true}, nil
}

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	news, err := typedInputs(req.GetUrn(), req.GetNews())
	if err != nil {
		return nil, err
	}
	var failures []*pulumirpc.CheckFailure
	for _, key := range []resource.PropertyKey{"assetPaths", "archivePaths"} {
		if v, ok := news[key]; ok && !v.IsNull() {
			failures = append(failures, &pulumirpc.CheckFailure{Property: string(key),
				Reason: "not supported by kthw's command provider"})
		}
	}
	if resourceType(req.GetUrn()) == copyToRemote {
		if src := plain(news["source"]); !src.ContainsUnknowns() && (!src.IsAsset() || src.AssetValue().Path == "") {
			failures = append(failures, &pulumirpc.CheckFailure{Property: "source",
				Reason: "kthw's command provider copies a file asset (pulumi.FileAsset) only"})
		}
		if p, ok := str(news, "remotePath"); !ok || p == "" {
			failures = append(failures, &pulumirpc.CheckFailure{Property: "remotePath", Reason: "required"})
		}
	}
	if t := resourceType(req.GetUrn()); t == remoteCommand || t == copyToRemote {
		conn, ok := news["connection"]
		switch {
		case !ok || conn.IsNull():
			failures = append(failures, &pulumirpc.CheckFailure{Property: "connection", Reason: "required"})
		case conn.ContainsUnknowns():
		default:
			c := plain(conn)
			if c.IsObject() {
				if h := c.ObjectValue()["host"]; h.IsNull() {
					failures = append(failures, &pulumirpc.CheckFailure{Property: "connection.host", Reason: "required"})
				}
				if px := c.ObjectValue()["proxy"]; !px.IsNull() {
					failures = append(failures, &pulumirpc.CheckFailure{Property: "connection.proxy",
						Reason: "not supported by kthw's command provider"})
				}
			}
		}
	}
	return &pulumirpc.CheckResponse{Inputs: req.GetNews(), Failures: failures}, nil
}

// inputKeys are what Diff compares: the inputs, never the outputs stdout/stderr.
func inputKeys(olds, news resource.PropertyMap) []resource.PropertyKey {
	seen := map[resource.PropertyKey]bool{}
	var keys []resource.PropertyKey
	for _, m := range []resource.PropertyMap{olds, news} {
		for k := range m {
			if k == "stdout" || k == "stderr" || seen[k] {
				continue
			}
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		if olds, err = unmarshal(req.GetOlds()); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	var diffs, replaces []string
	for _, k := range inputKeys(olds, news) {
		o, n := olds[k], news[k]
		if n.ContainsUnknowns() || !plain(o).DeepEquals(plain(n)) {
			diffs = append(diffs, string(k))
			if k == "triggers" {
				replaces = append(replaces, string(k))
			}
		}
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if len(diffs) > 0 {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{Changes: changes, Diffs: diffs, Replaces: replaces, HasDetailedDiff: false}, nil
}

// plain strips secret markers, recursively, for comparisons and for use.
func plain(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return plain(v.SecretValue().Element)
	case v.IsObject():
		out := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			out[k] = plain(e)
		}
		return resource.NewObjectProperty(out)
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]resource.PropertyValue, len(arr))
		for i, e := range arr {
			out[i] = plain(e)
		}
		return resource.NewArrayProperty(out)
	}
	return v
}

func str(m resource.PropertyMap, key resource.PropertyKey) (string, bool) {
	v := plain(m[key])
	if v.IsString() {
		return v.StringValue(), true
	}
	return "", false
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	news, err := typedInputs(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	if resourceType(req.GetUrn()) == copyToRemote {
		props, err := copied(ctx, news, req.GetPreview())
		if err != nil {
			return nil, err
		}
		return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
	}
	state := news.Copy()
	if req.GetPreview() {
		state["stdout"] = resource.MakeComputed(resource.NewStringProperty(""))
		state["stderr"] = resource.MakeComputed(resource.NewStringProperty(""))
	} else {
		state["stdout"], state["stderr"] = resource.NewStringProperty(""), resource.NewStringProperty("")
		if cmd, ok := str(news, "create"); ok {
			if err := p.run(ctx, req.GetUrn(), cmd, news, nil, state); err != nil {
				return nil, err
			}
		}
	}
	props, err := marshal(state)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	// Nothing to observe: the state is what the last command produced.
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: req.GetProperties(), Inputs: req.GetInputs()}, nil
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	olds, err := typedInputs(req.GetUrn(), req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	if resourceType(req.GetUrn()) == copyToRemote {
		props, err := copied(ctx, news, req.GetPreview())
		if err != nil {
			return nil, err
		}
		return &pulumirpc.UpdateResponse{Properties: props}, nil
	}
	state := news.Copy()
	for _, k := range []resource.PropertyKey{"stdout", "stderr"} {
		if v, ok := olds[k]; ok {
			state[k] = v
		} else {
			state[k] = resource.NewStringProperty("")
		}
	}
	if !req.GetPreview() {
		cmd, ok := str(news, "update")
		if !ok {
			cmd, ok = str(news, "create")
		}
		if ok {
			if err := p.run(ctx, req.GetUrn(), cmd, news, olds, state); err != nil {
				return nil, err
			}
		}
	}
	props, err := marshal(state)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	olds, err := typedInputs(req.GetUrn(), req.GetProperties())
	if err != nil {
		return nil, err
	}
	if cmd, ok := str(olds, "delete"); ok {
		if err := p.run(ctx, req.GetUrn(), cmd, olds, olds, olds.Copy()); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// run runs cmd for the resource with inputs `in`; `prev` holds the previous stdout/stderr (or nil). The captured
// outputs go to state["stdout"], state["stderr"].
func (p *commandProvider) run(ctx context.Context, urn, cmd string, in, prev, state resource.PropertyMap) error {
	env := map[string]string{}
	if e := plain(in["environment"]); e.IsObject() {
		for k, v := range e.ObjectValue() {
			if v.IsString() {
				env[string(k)] = v.StringValue()
			}
		}
	}
	if add := plain(in["addPreviousOutputInEnv"]); prev != nil && (!add.IsBool() || add.BoolValue()) {
		if s, ok := str(prev, "stdout"); ok && s != "" {
			env[envStdout] = s
		}
		if s, ok := str(prev, "stderr"); ok && s != "" {
			env[envStderr] = s
		}
	}
	stdin, _ := str(in, "stdin")
	logging, _ := str(in, "logging")
	if logging == "" {
		logging = "stdoutAndStderr"
	}

	var stdout, stderr, both bytes.Buffer
	logw := newLineLogger(ctx, p.host, resource.URN(urn))
	outs := []io.Writer{&stdout, &both}
	errs := []io.Writer{&stderr, &both}
	if logging == "stdout" || logging == "stdoutAndStderr" {
		outs = append(outs, logw)
	}
	if logging == "stderr" || logging == "stdoutAndStderr" {
		errs = append(errs, logw)
	}
	var err error
	switch resourceType(urn) {
	case localCommand:
		err = runLocal(ctx, cmd, in, env, stdin, io.MultiWriter(outs...), io.MultiWriter(errs...))
	case remoteCommand:
		err = runRemote(ctx, cmd, in, env, stdin, io.MultiWriter(outs...), io.MultiWriter(errs...))
	}
	logw.Flush()
	if err != nil {
		return fmt.Errorf("%w: running %q:\n%s", err, cmd, both.String())
	}
	state["stdout"] = resource.NewStringProperty(strings.TrimSuffix(stdout.String(), "\n"))
	state["stderr"] = resource.NewStringProperty(strings.TrimSuffix(stderr.String(), "\n"))
	return nil
}

func runLocal(ctx context.Context, cmd string, in resource.PropertyMap, env map[string]string, stdin string,
	stdout, stderr io.Writer,
) error {
	args := []string{"/bin/sh", "-c"}
	if interp := plain(in["interpreter"]); interp.IsArray() && len(interp.ArrayValue()) > 0 {
		args = nil
		for _, a := range interp.ArrayValue() {
			args = append(args, a.StringValue())
		}
	}
	args = append(args, cmd)
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	if dir, ok := str(in, "dir"); ok {
		c.Dir = dir
	}
	c.Env = os.Environ()
	for k, v := range env {
		c.Env = append(c.Env, k+"="+v)
	}
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	c.Stdout, c.Stderr = stdout, stderr
	return c.Run()
}

// runSession runs cmd in one SSH session on the connection's host, after `setup` prepared the session
// (environment, stdin, outputs); a cancelled context sends SIGTERM and returns.
func runSession(ctx context.Context, in resource.PropertyMap, cmd string, setup func(*ssh.Session) error) error {
	client, err := dial(ctx, plain(in["connection"]).ObjectValue())
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	if err := setup(session); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- session.Run(cmd) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = session.Signal(ssh.SIGTERM)
		return ctx.Err()
	}
}

func runRemote(ctx context.Context, cmd string, in resource.PropertyMap, env map[string]string, stdin string,
	stdout, stderr io.Writer,
) error {
	return runSession(ctx, in, cmd, func(session *ssh.Session) error {
		for k, v := range env {
			if err := session.Setenv(k, v); err != nil {
				if k == envStdout || k == envStderr {
					continue // as upstream: a warning only
				}
				return fmt.Errorf("could not set environment variable %q (the SSH server must accept it with "+
					"AcceptEnv): %w", k, err)
			}
		}
		if stdin != "" {
			session.Stdin = strings.NewReader(stdin)
		}
		session.Stdout, session.Stderr = stdout, stderr
		return nil
	})
}

// copied runs a CopyToRemote's create or update: the copy (not in a preview); its state is its inputs.
func copied(ctx context.Context, news resource.PropertyMap, preview bool) (*structpb.Struct, error) {
	if !preview {
		if err := copyFile(ctx, news); err != nil {
			return nil, err
		}
	}
	return marshal(news.Copy())
}

// copyFile writes the source file asset to remotePath on the connection's host: streamed into a temporary
// name beside it, then renamed, so a half-copied file never has the final name. As upstream, delete leaves
// the remote file.
func copyFile(ctx context.Context, in resource.PropertyMap) error {
	src := plain(in["source"])
	if !src.IsAsset() || src.AssetValue().Path == "" {
		return errors.New("CopyToRemote: source must be a file asset")
	}
	remotePath, _ := str(in, "remotePath")
	f, err := os.Open(src.AssetValue().Path)
	if err != nil {
		return fmt.Errorf("CopyToRemote: %w", err)
	}
	defer f.Close()
	quoted := "'" + strings.ReplaceAll(remotePath, "'", `'\''`) + "'"
	var stderr bytes.Buffer
	err = runSession(ctx, in, "umask 077 && cat > "+quoted+".part && mv -f "+quoted+".part "+quoted,
		func(session *ssh.Session) error {
			session.Stdin, session.Stderr = f, &stderr
			return nil
		})
	if err != nil {
		return fmt.Errorf("CopyToRemote to %s: %w: %s", remotePath, err, stderr.String())
	}
	return nil
}

func num(m resource.PropertyMap, key resource.PropertyKey, def int) int {
	if v := m[key]; v.IsNumber() {
		return int(v.NumberValue())
	}
	return def
}

// dial connects with the connection's credentials, retrying failed dials as upstream does: dialErrorLimit
// attempts (default 10, -1 for no limit), each bounded by perDialTimeout seconds (default 15, 0 for none).
func dial(ctx context.Context, conn resource.PropertyMap) (*ssh.Client, error) {
	host, _ := str(conn, "host")
	user, ok := str(conn, "user")
	if !ok {
		user = "root"
	}
	port := num(conn, "port", 22)
	limit := num(conn, "dialErrorLimit", 10)
	perDial := num(conn, "perDialTimeout", 15)

	var auth []ssh.AuthMethod
	if key, ok := str(conn, "privateKey"); ok {
		var signer ssh.Signer
		var err error
		if pass, ok := str(conn, "privateKeyPassword"); ok {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(key), []byte(pass))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(key))
		}
		if err != nil {
			return nil, fmt.Errorf("parsing connection.privateKey: %w", err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if pw, ok := str(conn, "password"); ok {
		auth = append(auth, ssh.Password(pw))
		auth = append(auth, ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	}
	sock, ok := str(conn, "agentSocketPath")
	if !ok {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			auth = append(auth, ssh.PublicKeysCallback(agent.NewClient(c).Signers))
		}
	}
	hostKeyCallback := ssh.InsecureIgnoreHostKey() //nolint:gosec // as upstream, unless hostKey is given
	if hk, ok := str(conn, "hostKey"); ok {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hk))
		if err != nil {
			return nil, fmt.Errorf("parsing connection.hostKey: %w", err)
		}
		hostKeyCallback = ssh.FixedHostKey(pub)
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: hostKeyCallback,
		Timeout: time.Duration(perDial) * time.Second}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var lastErr error
	for attempt := 1; limit < 0 || attempt <= limit; attempt++ {
		client, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return client, nil
		}
		lastErr = err
		var authErr *ssh.ServerAuthError
		if errors.As(err, &authErr) || strings.Contains(err.Error(), "unable to authenticate") {
			break // retrying will not help
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(min(attempt, 5)) * time.Second):
		}
	}
	return nil, fmt.Errorf("dialing %s as %s: %w", addr, user, lastErr)
}

// lineLogger sends complete lines to the engine's log for the resource (if there is an engine).
type lineLogger struct {
	ctx  context.Context
	host *provider.HostClient
	urn  resource.URN
	mu   sync.Mutex
	buf  []byte
}

func newLineLogger(ctx context.Context, host *provider.HostClient, urn resource.URN) *lineLogger {
	return &lineLogger{ctx: ctx, host: host, urn: urn}
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}

func (l *lineLogger) emit(line string) {
	if l.host == nil {
		return
	}
	sc := bufio.NewScanner(strings.NewReader(line))
	for sc.Scan() {
		_ = l.host.Log(l.ctx, diag.Info, l.urn, sc.Text())
	}
}
