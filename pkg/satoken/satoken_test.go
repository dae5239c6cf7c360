package satoken

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadOrCreate(filepath.Join(dir, "sa.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	// The key is kept: a second load verifies the first one's tokens.
	again, err := LoadOrCreate(filepath.Join(dir, "sa.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreate(filepath.Join(dir, "other.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	claims := Claims{
		Subject: Username("default", "web"), Audience: []string{"vault", DefaultIssuer},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(time.Hour).Unix(),
		Kube: KubeClaims{Namespace: "default", ServiceAccount: Ref{"web", "u1"}, Pod: &Ref{"web-1", "u2"}},
	}
	tok, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + b64([]byte(`{"iss":"`+DefaultIssuer+`","sub":"system:serviceaccount:kube-system:admin"}`)) + "." + parts[2]

	tests := []struct {
		name     string
		signer   *Signer
		token    string
		audience string
		at       time.Time
		want     error
	}{
		{"valid", s, tok, DefaultIssuer, now, nil},
		{"valid after restart", again, tok, DefaultIssuer, now, nil},
		{"other audience it names", s, tok, "vault", now, nil},
		{"audience not named", s, tok, "elsewhere", now, ErrAudience},
		{"expired", s, tok, DefaultIssuer, now.Add(time.Hour + 2*time.Minute), ErrExpired},
		{"within leeway", s, tok, DefaultIssuer, now.Add(time.Hour + 30*time.Second), nil},
		{"not yet valid", s, tok, DefaultIssuer, now.Add(-5 * time.Minute), ErrExpired},
		{"other cluster's key", other, tok, DefaultIssuer, now, ErrNotOurs},
		{"tampered claims", s, tampered, DefaultIssuer, now, ErrNotOurs},
		{"admin secret, not a JWT", s, "0123456789abcdef", DefaultIssuer, now, ErrNotOurs},
		{"garbage parts", s, "a.b.c", DefaultIssuer, now, ErrNotOurs},
	}
	for _, tt := range tests {
		c, err := tt.signer.Verify(tt.token, tt.audience, tt.at)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
			continue
		}
		if err == nil && (c.Subject != claims.Subject || c.Kube.Pod == nil || c.Kube.Pod.UID != "u2" || c.Issuer != DefaultIssuer) {
			t.Errorf("%s: claims = %+v", tt.name, c)
		}
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sa.key")
	if err := os.WriteFile(p, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(p, ""); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("LoadOrCreate of garbage = %v, want an error saying how to fix it", err)
	}
}
