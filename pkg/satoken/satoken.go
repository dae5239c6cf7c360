// Package satoken issues and checks service account tokens: JWTs signed with
// the cluster's service-account key, by which a pod proves to the API server
// which service account, and which pod, it runs as. The kubelet asks for them
// through the TokenRequest API and mounts them where in-cluster clients look
// (/var/run/secrets/kubernetes.io/serviceaccount/token).
package satoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"
)

// DefaultIssuer is the issuer and default audience of tokens, the API
// server's in-cluster URL, as Kubernetes clusters commonly set
// --service-account-issuer.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// Claims are what a token says. The private "kubernetes.io" claim names the
// service account and the object the token is bound to.
type Claims struct {
	Issuer    string     `json:"iss"`
	Subject   string     `json:"sub"`
	Audience  []string   `json:"aud"`
	Expiry    int64      `json:"exp"`
	IssuedAt  int64      `json:"iat"`
	NotBefore int64      `json:"nbf"`
	ID        string     `json:"jti,omitempty"`
	Kube      KubeClaims `json:"kubernetes.io"`
}

// KubeClaims is the "kubernetes.io" claim.
type KubeClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount Ref    `json:"serviceaccount"`
	Pod            *Ref   `json:"pod,omitempty"`
	Secret         *Ref   `json:"secret,omitempty"`
	Node           *Ref   `json:"node,omitempty"`
}

// Ref names an object by name and uid.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Username is how the API server names a service account:
// system:serviceaccount:NAMESPACE:NAME.
func Username(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Signer signs and verifies tokens with one ECDSA P-256 key (ES256).
type Signer struct {
	key    *ecdsa.PrivateKey
	kid    string
	Issuer string
}

// LoadOrCreate reads the PEM-encoded EC private key at path, creating it on
// first start, so tokens survive a server restart.
func LoadOrCreate(path, issuer string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("satoken: generate key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("satoken: write key: %w", err)
		}
		return New(key, issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("satoken: read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("satoken: %s holds no PEM key; delete it to have a new one made (tokens issued so far stop working)", path)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("satoken: %s: %w", path, err)
	}
	return New(key, issuer)
}

// New makes a Signer from key. The key id is a hash of the public key, as
// Kubernetes derives it, so verifiers can tell keys apart.
func New(key *ecdsa.PrivateKey, issuer string) (*Signer, error) {
	if key.Curve != elliptic.P256() {
		return nil, errors.New("satoken: the key must be on curve P-256")
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pub)
	if issuer == "" {
		issuer = DefaultIssuer
	}
	return &Signer{key: key, kid: b64(sum[:]), Issuer: issuer}, nil
}

var b64 = base64.RawURLEncoding.EncodeToString

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Sign returns the compact JWT of c, with c.Issuer set to the signer's.
func (s *Signer) Sign(c Claims) (string, error) {
	c.Issuer = s.Issuer
	h, _ := json.Marshal(header{Alg: "ES256", Kid: s.kid})
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := b64(h) + "." + b64(p)
	digest := sha256.Sum256([]byte(signed))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64) // r and s, 32 bytes each, big-endian (RFC 7518 3.4)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signed + "." + b64(sig), nil
}

// Errors from Verify. ErrNotOurs means the bearer string is no token of this
// signer (another kind of credential may still match it).
var (
	ErrNotOurs  = errors.New("satoken: not a service account token of this cluster")
	ErrExpired  = errors.New("satoken: token has expired")
	ErrAudience = errors.New("satoken: token audiences do not include the API server")
)

// Verify checks the signature, issuer, validity window and that one of the
// token's audiences is audience, and returns its claims. Whether the service
// account and the bound object still exist is the caller's to check.
func (s *Signer) Verify(token, audience string, now time.Time) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, ErrNotOurs
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil || len(sig) != 64 {
		return nil, ErrNotOurs
	}
	var h header
	if json.Unmarshal(hb, &h) != nil || h.Alg != "ES256" || h.Kid != s.kid {
		return nil, ErrNotOurs
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], r, sv) {
		return nil, ErrNotOurs
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil || c.Issuer != s.Issuer {
		return nil, ErrNotOurs
	}
	// A minute of leeway for clocks, as Kubernetes allows.
	const leeway = 60
	t := now.Unix()
	if t > c.Expiry+leeway || t+leeway < c.NotBefore {
		return nil, ErrExpired
	}
	if !slices.Contains(c.Audience, audience) {
		return nil, ErrAudience
	}
	return &c, nil
}

// Discovery is the OpenID provider configuration served at
// /.well-known/openid-configuration, so that services outside the cluster
// (Vault, cloud identity federation) can verify tokens with the keys at
// jwksURI.
func (s *Signer) Discovery(jwksURI string) []byte {
	out, _ := json.Marshal(map[string]any{
		"issuer":                                s.Issuer,
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
	return out
}

// JWKS is the public key set served at /openid/v1/jwks.
func (s *Signer) JWKS() []byte {
	pub := &s.key.PublicKey
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	out, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"use": "sig", "kty": "EC", "kid": s.kid, "crv": "P-256", "alg": "ES256", "x": b64(x), "y": b64(y),
	}}})
	return out
}
