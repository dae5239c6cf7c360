package kubelet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// tokens keeps the service account tokens of projected volumes. A token is
// asked for once through the TokenRequest API, bound to its pod, and asked
// for again when 80 % of its life or 24 hours have passed (Kubernetes'
// rule), so a long-running pod always finds a valid token in its volume.
type tokens struct {
	mu sync.Mutex
	m  map[string]issuedToken
}

type issuedToken struct {
	token         string
	issued, until time.Time
}

func (t issuedToken) fresh(now time.Time) bool {
	life := t.until.Sub(t.issued)
	return now.Before(t.issued.Add(life*8/10)) && now.Before(t.issued.Add(24*time.Hour))
}

// serviceAccountToken returns the token a projected volume's source asks for.
func (k *Kubelet) serviceAccountToken(ctx context.Context, pod *v1.Pod, src *v1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	key := strings.Join([]string{string(pod.UID), sa, src.Audience, fmt.Sprint(exp)}, "/")
	now := time.Now()
	k.tokens.mu.Lock()
	t, ok := k.tokens.m[key]
	k.tokens.mu.Unlock()
	if ok && t.fresh(now) {
		return t.token, nil
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	out, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(t.until) {
			return t.token, nil // keep serving the old one until it expires
		}
		return "", fmt.Errorf("failed to fetch token: %w", err)
	}
	t = issuedToken{token: out.Status.Token, issued: now, until: out.Status.ExpirationTimestamp.Time}
	k.tokens.mu.Lock()
	if k.tokens.m == nil {
		k.tokens.m = map[string]issuedToken{}
	}
	k.tokens.m[key] = t
	k.tokens.mu.Unlock()
	return t.token, nil
}

// forgetTokens drops a deleted pod's tokens.
func (k *Kubelet) forgetTokens(uid types.UID) {
	k.tokens.mu.Lock()
	defer k.tokens.mu.Unlock()
	for key := range k.tokens.m {
		if strings.HasPrefix(key, string(uid)+"/") {
			delete(k.tokens.m, key)
		}
	}
}
