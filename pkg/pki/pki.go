// Package pki owns the cluster's certificates: a self-signed CA created on the
// server's first start, the API server's serving certificate, the admin client
// certificate and the bearer secret that agents join with.
//
// Everything lives as PEM files in one directory so that a restarted server
// keeps its identity, and clients holding an old kubeconfig keep working.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sentinel errors.
var (
	ErrIncomplete   = errors.New("pki: incomplete certificate directory")
	ErrInvalidToken = errors.New("pki: invalid join token")
	ErrCAMismatch   = errors.New("pki: server CA does not match the join token")
)

// Lifetimes. Leaf certificates are renewed on start when less than
// renewBefore of their life is left, so a server restarted now and then never
// serves an expired certificate.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 365 * 24 * time.Hour
	renewBefore  = 90 * 24 * time.Hour
)

// File names inside the PKI directory.
const (
	caCertFile      = "ca.crt"
	caKeyFile       = "ca.key"
	servingCertFile = "serving.crt"
	servingKeyFile  = "serving.key"
	adminCertFile   = "admin.crt"
	adminKeyFile    = "admin.key"
	tokenFile       = "token"      // the admin bearer secret
	joinTokenFile   = "join-token" // what `skiff agent --token` takes
)

// defaultSANs are the names every in-cluster client may use for the API server.
var defaultSANs = []string{
	"localhost", "127.0.0.1",
	"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
}

// Bundle is the loaded PKI of one cluster. It is immutable after Ensure.
type Bundle struct {
	Dir   string
	CAPEM []byte // the CA certificate, PEM
	Token string // admin bearer secret

	caCert     *x509.Certificate
	caKey      *ecdsa.PrivateKey
	serving    tls.Certificate
	adminCert  []byte // PEM
	adminKey   []byte // PEM
	servingSAN []string
}

// Ensure loads the cluster's certificates from dir, creating what is missing
// on first start, and regenerates the serving certificate when hosts changed.
// It also writes dir/join-token, the token agents join with.
// hosts should include the advertise address and the first IP of the service
// range; the well-known in-cluster names are always added.
func Ensure(dir string, hosts []string) (*Bundle, error) {
	return ensure(dir, hosts, time.Now())
}

func ensure(dir string, hosts []string, now time.Time) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	b := &Bundle{Dir: dir}
	if err := b.ensureCA(now); err != nil {
		return nil, err
	}
	b.servingSAN = servingSANs(hosts)
	certPEM, keyPEM, err := b.ensureLeaf(servingCertFile, servingKeyFile, now, func(c *x509.Certificate) bool {
		return slices.Equal(certSANs(c), b.servingSAN)
	}, func() ([]byte, []byte, error) {
		return b.issue(now, "skiff-apiserver", nil, b.servingSAN, x509.ExtKeyUsageServerAuth)
	})
	if err != nil {
		return nil, err
	}
	if b.serving, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("pki: serving key pair: %w", err)
	}
	b.adminCert, b.adminKey, err = b.ensureLeaf(adminCertFile, adminKeyFile, now, func(c *x509.Certificate) bool {
		return c.Subject.CommonName == "admin" && slices.Equal(c.Subject.Organization, []string{"system:masters"})
	}, func() ([]byte, []byte, error) {
		return b.issue(now, "admin", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	})
	if err != nil {
		return nil, err
	}
	if err := b.ensureToken(); err != nil {
		return nil, err
	}
	// The join token is derived, but kept as a file so an operator can copy
	// it to `skiff agent --token` without running anything.
	if err := writeFile(b.path(joinTokenFile), []byte(b.JoinToken()+"\n"), 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// ensureCA loads the CA or, when neither file exists, creates one. A CA
// certificate without its key is an error: silently replacing the CA would
// lock out every agent and kubeconfig issued so far.
func (b *Bundle) ensureCA(now time.Time) error {
	certPath, keyPath := b.path(caCertFile), b.path(caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return b.createCA(now)
	case certErr != nil:
		return fmt.Errorf("%w: %s: %v (ca.key exists; restore ca.crt or remove both to create a new CA)", ErrIncomplete, certPath, certErr)
	case keyErr != nil:
		return fmt.Errorf("%w: %s: %v (ca.crt exists; restore ca.key or remove both to create a new CA)", ErrIncomplete, keyPath, keyErr)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("pki: %s: %w", certPath, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	b.CAPEM, b.caCert, b.caKey = certPEM, cert, key
	return nil
}

func (b *Bundle) createCA(now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("skiff-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("pki: parse CA: %w", err)
	}
	certPEM, keyPEM, err := encode(der, key)
	if err != nil {
		return err
	}
	// Key first: a crash between the two writes leaves only a key, which the
	// next start reports instead of pairing a new certificate with it.
	if err := writeFile(b.path(caKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(b.path(caCertFile), certPEM, 0o644); err != nil {
		return err
	}
	b.CAPEM, b.caCert, b.caKey = certPEM, cert, key
	return nil
}

// ensureLeaf returns the PEM pair stored under certName/keyName when it is
// signed by this CA, still valid for a while, and accepted by ok; otherwise it
// creates a new pair with issue and stores it.
func (b *Bundle) ensureLeaf(certName, keyName string, now time.Time, ok func(*x509.Certificate) bool, issue func() ([]byte, []byte, error)) ([]byte, []byte, error) {
	certPEM, certErr := os.ReadFile(b.path(certName))
	keyPEM, keyErr := os.ReadFile(b.path(keyName))
	if certErr == nil && keyErr == nil && b.usable(certPEM, keyPEM, now, ok) {
		return certPEM, keyPEM, nil
	}
	certPEM, keyPEM, err := issue()
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(b.path(keyName), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(b.path(certName), certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func (b *Bundle) usable(certPEM, keyPEM []byte, now time.Time, ok func(*x509.Certificate) bool) bool {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return false
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil || cert.CheckSignatureFrom(b.caCert) != nil {
		return false
	}
	if now.Before(cert.NotBefore) || now.Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	return ok(cert)
}

func (b *Bundle) ensureToken() error {
	p := b.path(tokenFile)
	data, err := os.ReadFile(p)
	if err == nil {
		if tok := strings.TrimSpace(string(data)); tok != "" {
			b.Token = tok
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pki: read token: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("pki: generate token: %w", err)
	}
	b.Token = hex.EncodeToString(raw)
	return writeFile(p, []byte(b.Token+"\n"), 0o600)
}

// IssueClient signs a client certificate, e.g. CN=system:node:NAME with
// O=system:nodes for a kubelet.
func (b *Bundle) IssueClient(cn string, orgs []string) (certPEM, keyPEM []byte, err error) {
	return b.issue(time.Now(), cn, orgs, nil, x509.ExtKeyUsageClientAuth)
}

// IssueServing signs a serving certificate for hosts (DNS names or IPs), e.g.
// for a kubelet's HTTPS server.
func (b *Bundle) IssueServing(hosts []string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("pki: serving certificate needs at least one host")
	}
	return b.issue(time.Now(), hosts[0], nil, dedupe(hosts), x509.ExtKeyUsageServerAuth)
}

func (b *Bundle) issue(now time.Time, cn string, orgs, hosts []string, usage x509.ExtKeyUsage) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.caCert, &key.PublicKey, b.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign %q: %w", cn, err)
	}
	return encode(der, key)
}

// ServerTLS is the API server's TLS configuration: its serving certificate,
// and client certificates verified against the CA when a client offers one
// (bearer tokens and anonymous requests still reach the handler).
func (b *Bundle) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{b.serving},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    b.CAPool(),
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// CAPool is a certificate pool holding only the cluster CA.
func (b *Bundle) CAPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(b.caCert)
	return pool
}

// ServingHosts is the sorted list of names and IPs in the serving certificate.
func (b *Bundle) ServingHosts() []string { return slices.Clone(b.servingSAN) }

// AdminCertPEM is the admin client certificate, PEM.
func (b *Bundle) AdminCertPEM() []byte { return b.adminCert }

// AdminKeyPEM is the admin client key, PEM.
func (b *Bundle) AdminKeyPEM() []byte { return b.adminKey }

func (b *Bundle) path(name string) string { return filepath.Join(b.Dir, name) }

// servingSANs is hosts plus the default names, deduplicated and sorted so that
// it compares equal to certSANs of a certificate made from it.
func servingSANs(hosts []string) []string {
	all := append(slices.Clone(defaultSANs), hosts...)
	out := dedupe(all)
	slices.Sort(out)
	return out
}

func dedupe(hosts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

func certSANs(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("pki: crypto/rand failed: %v", err))
	}
	return n.Add(n, big.NewInt(1))
}

func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ECDSA", k)
		}
		return ec, nil
	}
	return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
}

// writeFile replaces path atomically, so a crash never leaves half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("pki: create directory for %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
