package pki_test

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/pki"
)

// TestAgentJoinsRealServer joins the real API server the way `skiff agent`
// does: with the join token from the server's data dir and nothing else.
func TestAgentJoinsRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and the API server")
	}
	c := testcluster.Start(t, testcluster.Options{})
	raw, err := os.ReadFile(filepath.Join(c.DataDir, "join-token"))
	if err != nil {
		t.Fatalf("server wrote no join token: %v", err)
	}
	tok := strings.TrimSpace(string(raw))

	cfg, err := pki.AgentRESTConfig(c.URL, tok)
	if err != nil {
		t.Fatalf("AgentRESTConfig(%s, join token) = %v", c.URL, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace kube-system with the join token = %v, want it allowed", err)
	}

	// The right CA with a wrong secret reaches the server, which refuses it.
	hash, _, err := pki.ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := pki.AgentRESTConfig(c.URL, "K10"+hex.EncodeToString(hash)+"::admin:wrong")
	if err != nil {
		t.Fatalf("AgentRESTConfig(wrong secret) = %v, want a config (the CA still matches)", err)
	}
	badClient, err := kubernetes.NewForConfig(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := badClient.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("list namespaces with a wrong secret = %v, want 401 Unauthorized", err)
	}

	// A token pinning another CA is refused before any credential is sent.
	other, err := pki.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.AgentRESTConfig(c.URL, other.JoinToken()); !errors.Is(err, pki.ErrCAMismatch) {
		t.Errorf("AgentRESTConfig(token of another CA) = %v, want %v", err, pki.ErrCAMismatch)
	}
}
