package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// tokenPrefix marks a join token's format version, in the shape k3s users know.
const tokenPrefix = "K10"

// fetchTimeout bounds the one unauthenticated request an agent makes to learn
// the server's CA.
const fetchTimeout = 10 * time.Second

// AdminRESTConfig is a client-go configuration for url that authenticates with
// the admin client certificate and trusts only the cluster CA.
func (b *Bundle) AdminRESTConfig(url string) *rest.Config {
	return &rest.Config{
		Host: url,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   bytes.Clone(b.CAPEM),
			CertData: bytes.Clone(b.adminCert),
			KeyData:  bytes.Clone(b.adminKey),
		},
	}
}

// WriteKubeconfig writes an admin kubeconfig for url with the certificates
// embedded, mode 0600, creating parent directories.
func (b *Bundle) WriteKubeconfig(path, url string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: bytes.Clone(b.CAPEM)}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: bytes.Clone(b.adminCert), ClientKeyData: bytes.Clone(b.adminKey)}
	cfg.Contexts["skiff"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "admin"}
	cfg.CurrentContext = "skiff"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("pki: encode kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("pki: create directory for kubeconfig: %w", err)
	}
	return writeFile(path, data, 0o600)
}

// JoinToken is what `skiff agent --token` takes: the sha256 of the CA's DER,
// which lets an agent verify the server without a CA file, and the secret it
// authenticates with.
func (b *Bundle) JoinToken() string {
	sum := sha256.Sum256(b.caCert.Raw)
	return tokenPrefix + hex.EncodeToString(sum[:]) + "::admin:" + b.Token
}

// ParseJoinToken splits a token made by JoinToken into the CA hash and the
// bearer secret.
func ParseJoinToken(tok string) (caHash []byte, secret string, err error) {
	tok = strings.TrimSpace(tok)
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return nil, "", fmt.Errorf("%w: want K10<ca sha256>::admin:<secret>, the join token of the server", ErrInvalidToken)
	}
	hashHex, cred, ok := strings.Cut(rest, "::")
	if !ok {
		return nil, "", fmt.Errorf("%w: missing \"::\" after the CA hash", ErrInvalidToken)
	}
	caHash, err = hex.DecodeString(hashHex)
	if err != nil || len(caHash) != sha256.Size {
		return nil, "", fmt.Errorf("%w: CA hash must be %d hex digits", ErrInvalidToken, 2*sha256.Size)
	}
	_, secret, ok = strings.Cut(cred, ":")
	if !ok || secret == "" {
		return nil, "", fmt.Errorf("%w: missing secret after \"::admin:\"", ErrInvalidToken)
	}
	return caHash, secret, nil
}

// AgentRESTConfig gives an agent a client-go configuration for url from a join
// token. It fetches the server's CA from GET /cacerts once, without trusting
// it yet; keeps it only if its sha256 matches the token and the server's own
// certificate chains to it; then returns a configuration that trusts only that
// CA and authenticates with the token's secret.
func AgentRESTConfig(url, token string) (*rest.Config, error) {
	caHash, secret, err := ParseJoinToken(token)
	if err != nil {
		return nil, err
	}
	url = strings.TrimRight(url, "/")
	var peer []*x509.Certificate
	client := &http.Client{
		Timeout: fetchTimeout,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				// The server is not trusted yet; what it sends is checked
				// against the pinned hash below.
				InsecureSkipVerify: true, //nolint:gosec // verified by pin
				MinVersion:         tls.VersionTLS12,
				VerifyConnection: func(cs tls.ConnectionState) error {
					peer = cs.PeerCertificates
					return nil
				},
			},
			DisableKeepAlives: true,
		},
	}
	resp, err := client.Get(url + "/cacerts")
	if err != nil {
		return nil, fmt.Errorf("pki: fetch CA from %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("pki: fetch CA from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pki: fetch CA from %s: %s", url, resp.Status)
	}
	ca, err := pinnedCert(body, caHash)
	if err != nil {
		return nil, err
	}
	if len(peer) == 0 {
		return nil, fmt.Errorf("%w: server at %s sent no certificate", ErrCAMismatch, url)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	if _, err := peer[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return nil, fmt.Errorf("%w: server certificate of %s does not chain to the pinned CA: %v", ErrCAMismatch, url, err)
	}
	return &rest.Config{
		Host:            url,
		BearerToken:     secret,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})},
	}, nil
}

// pinnedCert returns the certificate in bundle whose DER hashes to want.
func pinnedCert(bundle, want []byte) (*x509.Certificate, error) {
	var got []string
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		sum := sha256.Sum256(block.Bytes)
		if bytes.Equal(sum[:], want) {
			return x509.ParseCertificate(block.Bytes)
		}
		got = append(got, hex.EncodeToString(sum[:]))
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("%w: server sent no CA certificate", ErrCAMismatch)
	}
	return nil, fmt.Errorf("%w: token pins %x, server's CA is %s; copy the token from this server again", ErrCAMismatch, want, strings.Join(got, ","))
}
