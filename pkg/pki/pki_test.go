package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func mustEnsure(t *testing.T, dir string, hosts ...string) *Bundle {
	t.Helper()
	b, err := Ensure(dir, hosts)
	if err != nil {
		t.Fatalf("Ensure(%s, %v) = %v", dir, hosts, err)
	}
	return b
}

// startServer serves b.ServerTLS() on loopback. It answers /cacerts with
// caPEM and every other path with who the caller is: "cert:CN/O" for a
// verified client certificate, "bearer:SECRET" for a token, "anonymous".
func startServer(t *testing.T, tlsCfg *tls.Config, caPEM []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cacerts" {
			w.Write(caPEM)
			return
		}
		switch {
		case r.TLS != nil && len(r.TLS.VerifiedChains) > 0:
			c := r.TLS.VerifiedChains[0][0]
			fmt.Fprintf(w, "cert:%s/%s", c.Subject.CommonName, strings.Join(c.Subject.Organization, ","))
		case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
			fmt.Fprintf(w, "bearer:%s", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		default:
			fmt.Fprint(w, "anonymous")
		}
	}))
	srv.TLS = tlsCfg
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func whoAmI(cfg *rest.Config) (string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", err
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(cfg.Host + "/whoami")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func TestEnsureCreatesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b := mustEnsure(t, dir, "10.43.0.1", "node-a.example")

	modes := map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600, "serving.crt": 0o644, "serving.key": 0o600,
		"admin.crt": 0o644, "admin.key": 0o600, "token": 0o600, "join-token": 0o600,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", name, got, want)
		}
	}
	if len(b.Token) < 32 {
		t.Errorf("Token = %q, want at least 32 characters", b.Token)
	}
	if jt, _ := os.ReadFile(filepath.Join(dir, "join-token")); strings.TrimSpace(string(jt)) != b.JoinToken() {
		t.Errorf("join-token file = %q, want %q", jt, b.JoinToken())
	}

	wantSANs := []string{"10.43.0.1", "127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "localhost", "node-a.example"}
	if got := b.ServingHosts(); !slices.Equal(got, wantSANs) {
		t.Errorf("ServingHosts() = %v, want %v", got, wantSANs)
	}
	leaf, err := x509.ParseCertificate(b.serving.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := certSANs(leaf); !slices.Equal(got, wantSANs) {
		t.Errorf("serving certificate SANs = %v, want %v", got, wantSANs)
	}

	servingBefore, _ := os.ReadFile(filepath.Join(dir, "serving.crt"))
	again := mustEnsure(t, dir, "node-a.example", "10.43.0.1") // same hosts, other order
	servingAfter, _ := os.ReadFile(filepath.Join(dir, "serving.crt"))
	if !bytes.Equal(again.CAPEM, b.CAPEM) || again.Token != b.Token || !bytes.Equal(again.adminCert, b.adminCert) {
		t.Errorf("second Ensure changed the CA, token or admin certificate")
	}
	if !bytes.Equal(servingBefore, servingAfter) {
		t.Errorf("second Ensure with the same hosts regenerated the serving certificate")
	}

	changed := mustEnsure(t, dir, "10.43.0.1", "192.0.2.7")
	servingChanged, _ := os.ReadFile(filepath.Join(dir, "serving.crt"))
	if bytes.Equal(servingChanged, servingAfter) {
		t.Errorf("Ensure with new hosts kept the old serving certificate")
	}
	if !slices.Contains(changed.ServingHosts(), "192.0.2.7") || slices.Contains(changed.ServingHosts(), "node-a.example") {
		t.Errorf("ServingHosts() after change = %v, want 192.0.2.7 and not node-a.example", changed.ServingHosts())
	}
	if !bytes.Equal(changed.CAPEM, b.CAPEM) {
		t.Errorf("changing hosts replaced the CA")
	}
}

func TestEnsureRenewsExpiringLeaf(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := ensure(dir, nil, now); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "serving.crt"))
	if _, err := ensure(dir, nil, now.Add(leafLifetime-renewBefore/2)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "serving.crt"))
	if bytes.Equal(before, after) {
		t.Errorf("ensure near the serving certificate's expiry kept it")
	}
}

func TestEnsureRefusesCAWithoutKey(t *testing.T) {
	dir := t.TempDir()
	mustEnsure(t, dir)
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, nil); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Ensure without ca.key = %v, want %v", err, ErrIncomplete)
	}
}

func TestEnsureReissuesLeavesForNewCA(t *testing.T) {
	dir := t.TempDir()
	mustEnsure(t, dir)
	os.Remove(filepath.Join(dir, "ca.key"))
	os.Remove(filepath.Join(dir, "ca.crt"))
	b := mustEnsure(t, dir)
	leaf, err := x509.ParseCertificate(b.serving.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(b.caCert); err != nil {
		t.Errorf("serving certificate not signed by the new CA: %v", err)
	}
	admin, err := parseCertPEM(b.adminCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CheckSignatureFrom(b.caCert); err != nil {
		t.Errorf("admin certificate not signed by the new CA: %v", err)
	}
}

func TestHandshake(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	other := mustEnsure(t, t.TempDir())
	srv := startServer(t, a.ServerTLS(), a.CAPEM)

	nodeCert, nodeKey, err := a.IssueClient("system:node:n1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	foreignClient := a.AdminRESTConfig(srv.URL)
	foreignClient.CertData, foreignClient.KeyData = other.adminCert, other.adminKey

	tests := []struct {
		name    string
		cfg     *rest.Config
		want    string
		wantErr bool
	}{
		{name: "admin certificate", cfg: a.AdminRESTConfig(srv.URL), want: "cert:admin/system:masters"},
		{name: "issued node certificate", cfg: &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
			CAData: a.CAPEM, CertData: nodeCert, KeyData: nodeKey}}, want: "cert:system:node:n1/system:nodes"},
		{name: "no certificate is anonymous", cfg: &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: a.CAPEM}}, want: "anonymous"},
		{name: "client trusting another CA", cfg: other.AdminRESTConfig(srv.URL), wantErr: true},
		{name: "client certificate from another CA", cfg: foreignClient, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := whoAmI(tt.cfg)
			if tt.wantErr {
				if err == nil {
					t.Errorf("whoAmI() = %q, want a TLS error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("whoAmI() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestServerTLSOffersH2(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	srv := startServer(t, a.ServerTLS(), a.CAPEM)
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{RootCAs: a.CAPool(), ServerName: "kubernetes.default.svc", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("dial with ServerName kubernetes.default.svc: %v", err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().NegotiatedProtocol; got != "h2" {
		t.Errorf("NegotiatedProtocol = %q, want h2", got)
	}
	if got := conn.ConnectionState().Version; got < tls.VersionTLS12 {
		t.Errorf("TLS version = %x, want >= TLS 1.2", got)
	}
}

func TestWriteKubeconfig(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	srv := startServer(t, a.ServerTLS(), a.CAPEM)
	path := filepath.Join(t.TempDir(), "nested", ".kube", "config")
	if err := a.WriteKubeconfig(path, srv.URL); err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode = %v, want 0600", fi.Mode().Perm())
	}
	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != "skiff" || raw.Contexts["skiff"].AuthInfo != "admin" || raw.Contexts["skiff"].Cluster != "skiff" {
		t.Errorf("kubeconfig context = %q %+v, want skiff -> cluster skiff, user admin", raw.CurrentContext, raw.Contexts["skiff"])
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := whoAmI(cfg); err != nil || got != "cert:admin/system:masters" {
		t.Errorf("whoAmI(kubeconfig) = %q, %v, want cert:admin/system:masters", got, err)
	}
}

func TestAgentRESTConfig(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	other := mustEnsure(t, t.TempDir())
	srv := startServer(t, a.ServerTLS(), a.CAPEM)
	// An impostor that hands out the real CA but serves with its own.
	impostor := startServer(t, other.ServerTLS(), a.CAPEM)

	cfg, err := AgentRESTConfig(srv.URL+"/", a.JoinToken())
	if err != nil {
		t.Fatalf("AgentRESTConfig(good token) = %v", err)
	}
	if got, err := whoAmI(cfg); err != nil || got != "bearer:"+a.Token {
		t.Errorf("whoAmI(agent config) = %q, %v, want bearer:%s", got, err, a.Token)
	}

	if _, err := AgentRESTConfig(srv.URL, other.JoinToken()); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("AgentRESTConfig(token of another CA) = %v, want %v", err, ErrCAMismatch)
	}
	if _, err := AgentRESTConfig(impostor.URL, a.JoinToken()); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("AgentRESTConfig(impostor) = %v, want %v", err, ErrCAMismatch)
	}
	if _, err := AgentRESTConfig(srv.URL, "not-a-token"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("AgentRESTConfig(garbage) = %v, want %v", err, ErrInvalidToken)
	}
}

func TestParseJoinToken(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		tok        string
		wantSecret string
		wantErr    bool
	}{
		{tok: "K10" + hash + "::admin:s3cret", wantSecret: "s3cret"},
		{tok: " K10" + hash + "::admin:a:b\n", wantSecret: "a:b"},
		{tok: "s3cret", wantErr: true},
		{tok: "K10" + hash + "admin:s3cret", wantErr: true},
		{tok: "K10" + hash[:10] + "::admin:s3cret", wantErr: true},
		{tok: "K10" + strings.Repeat("zz", 32) + "::admin:s3cret", wantErr: true},
		{tok: "K10" + hash + "::admin:", wantErr: true},
		{tok: "K10" + hash + "::admin", wantErr: true},
	}
	for _, tt := range tests {
		gotHash, gotSecret, err := ParseJoinToken(tt.tok)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("ParseJoinToken(%q) = %v, want %v", tt.tok, err, ErrInvalidToken)
			}
			continue
		}
		if err != nil || gotSecret != tt.wantSecret || fmt.Sprintf("%x", gotHash) != hash {
			t.Errorf("ParseJoinToken(%q) = %x, %q, %v, want %s, %q", tt.tok, gotHash, gotSecret, err, hash, tt.wantSecret)
		}
	}
}

func TestJoinTokenRoundTrip(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	hash, secret, err := ParseJoinToken(a.JoinToken())
	if err != nil {
		t.Fatal(err)
	}
	if secret != a.Token {
		t.Errorf("secret = %q, want %q", secret, a.Token)
	}
	if _, err := pinnedCert(a.CAPEM, hash); err != nil {
		t.Errorf("pinnedCert(own CA, own hash) = %v", err)
	}
}

func TestIssueServing(t *testing.T) {
	a := mustEnsure(t, t.TempDir())
	certPEM, keyPEM, err := a.IssueServing([]string{"node-1", "10.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"node-1", "10.0.0.5"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: a.CAPool(), DNSName: host}); err != nil {
			t.Errorf("Verify(%s) = %v, want nil", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: a.CAPool(), DNSName: "node-2"}); err == nil {
		t.Errorf("Verify(node-2) = nil, want a name mismatch")
	}
	if _, _, err := a.IssueServing(nil); err == nil {
		t.Errorf("IssueServing(nil) = nil error, want one")
	}
}
