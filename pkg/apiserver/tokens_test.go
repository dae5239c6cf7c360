package apiserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestServiceAccountTokens: the TokenRequest API issues tokens that
// authenticate as the service account for as long as it, and the pod a token
// is bound to, exist; `kubectl create token` uses the same API.
func TestServiceAccountTokens(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	sas := c.Client.CoreV1().ServiceAccounts("default")
	sa, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{ServiceAccountName: "robot", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// as returns a client that presents only the bearer token.
	as := func(token string) kubernetes.Interface {
		cfg := rest.AnonymousClientConfig(c.Config)
		cfg.BearerToken = token
		return kubernetes.NewForConfigOrDie(cfg)
	}
	whoami := func(token string) (*authenticationv1.SelfSubjectReview, error) {
		return as(token).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	}
	request := func(spec authenticationv1.TokenRequestSpec) (*authenticationv1.TokenRequest, error) {
		return sas.CreateToken(ctx, "robot", &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	}

	plain, err := request(authenticationv1.TokenRequestSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(plain.Status.ExpirationTimestamp.Time); d < 59*time.Minute || d > 61*time.Minute || *plain.Spec.ExpirationSeconds != 3600 {
		t.Errorf("default token lives %v (expirationSeconds %d), want 1h", d, *plain.Spec.ExpirationSeconds)
	}
	r, err := whoami(plain.Status.Token)
	if err != nil {
		t.Fatalf("whoami with a service account token: %v", err)
	}
	u := r.Status.UserInfo
	if u.Username != "system:serviceaccount:default:robot" || u.UID != string(sa.UID) ||
		strings.Join(u.Groups, ",") != "system:serviceaccounts,system:serviceaccounts:default,system:authenticated" {
		t.Errorf("token user = %+v", u)
	}
	if _, err := as(plain.Status.Token).CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods with the token: %v", err)
	}

	verifyWithJWKS(t, c, plain.Status.Token)

	bound, err := request(authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "p", UID: pod.UID}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := whoami(bound.Status.Token); err != nil || r.Status.UserInfo.Extra["authentication.kubernetes.io/pod-name"][0] != "p" {
		t.Errorf("whoami with a pod-bound token = %+v, %v", r, err)
	}

	// Refusals, worded as Kubernetes words them.
	short := int64(599)
	_, err = request(authenticationv1.TokenRequestSpec{ExpirationSeconds: &short})
	if se, ok := err.(*apierrors.StatusError); !ok || se.ErrStatus.Code != 422 || len(se.ErrStatus.Details.Causes) != 1 ||
		se.ErrStatus.Details.Causes[0].Field != "spec.expirationSeconds" || !strings.Contains(err.Error(), "less than 10 minutes") {
		t.Errorf("599 s token: %v, want 422 on spec.expirationSeconds", err)
	}
	_, err = request(authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "p", UID: "other"}})
	if !apierrors.IsConflict(err) {
		t.Errorf("token bound to a stale pod uid: %v, want 409", err)
	}
	_, err = request(authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "ConfigMap", APIVersion: "v1", Name: "x"}})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("token bound to a ConfigMap: %v, want 400", err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token for a missing service account: %v, want 404", err)
	}
	parts := strings.Split(plain.Status.Token, ".")
	payload := []byte(parts[1])
	payload[10] ^= 1 // another base64url letter: the signature no longer matches
	forged := parts[0] + "." + string(payload) + "." + parts[2]
	if _, err := whoami(forged); !apierrors.IsUnauthorized(err) {
		t.Errorf("forged token: %v, want 401", err)
	}

	// kubectl create token goes through the same API.
	out, err := exec.Command("kubectl", "--kubeconfig", c.Kubeconfig, "create", "token", "robot", "--duration=20m").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl create token: %v\n%s", err, out)
	}
	if _, err := whoami(strings.TrimSpace(string(out))); err != nil {
		t.Errorf("the token kubectl printed does not authenticate: %v", err)
	}

	// Deleting the pod ends its bound token; deleting the account ends all.
	if err := c.Client.CoreV1().Pods("default").Delete(ctx, "p", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	eventuallyUnauthorized(t, "pod-bound token after the pod is gone", func() error { _, err := whoami(bound.Status.Token); return err })
	if _, err := whoami(plain.Status.Token); err != nil {
		t.Errorf("an unbound token stopped working with the pod: %v", err)
	}
	if err := sas.Delete(ctx, "robot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyUnauthorized(t, "token after its service account is gone", func() error { _, err := whoami(plain.Status.Token); return err })
}

// eventuallyUnauthorized waits for the watch caches, which authentication
// reads, to see a deletion.
func eventuallyUnauthorized(t *testing.T, what string, call func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if err = call(); apierrors.IsUnauthorized(err) {
			return
		}
	}
	t.Errorf("%s: %v, want 401", what, err)
}

// TestServiceAccountVolume: new pods get the kube-api-access volume, as
// Kubernetes' ServiceAccount admission gives it, unless they or their
// account opt out.
func TestServiceAccountVolume(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	no := false
	for _, sa := range []*corev1.ServiceAccount{
		{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, AutomountServiceAccountToken: &no},
	} {
		if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	const path = "/var/run/secrets/kubernetes.io/serviceaccount"
	tests := []struct {
		name      string
		sa        string
		automount *bool
		ownMount  bool // the second container mounts something there itself
		want      bool
	}{
		{"default account", "", nil, false, true},
		{"pod opts out", "", &no, false, false},
		{"account opts out", "quiet", nil, false, false},
		{"missing account", "ghost", nil, false, false},
		{"container mounts its own", "", nil, true, true},
	}
	for i, tt := range tests {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p" + itoa(i)}, Spec: corev1.PodSpec{
			ServiceAccountName: tt.sa, AutomountServiceAccountToken: tt.automount,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "busybox"}},
		}}
		if tt.ownMount {
			pod.Spec.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			pod.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: path}}
		}
		got, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var vol *corev1.Volume
		for i := range got.Spec.Volumes {
			if strings.HasPrefix(got.Spec.Volumes[i].Name, "kube-api-access-") {
				vol = &got.Spec.Volumes[i]
			}
		}
		if (vol != nil) != tt.want {
			t.Errorf("%s: token volume %v, want %v", tt.name, vol != nil, tt.want)
			continue
		}
		if vol == nil {
			continue
		}
		p := vol.Projected
		if p == nil || len(p.Sources) != 3 || p.Sources[0].ServiceAccountToken == nil || *p.Sources[0].ServiceAccountToken.ExpirationSeconds != 3607 ||
			p.Sources[1].ConfigMap == nil || p.Sources[1].ConfigMap.Name != "kube-root-ca.crt" || p.Sources[2].DownwardAPI == nil {
			t.Errorf("%s: volume = %+v", tt.name, vol)
		}
		for _, ct := range append(got.Spec.InitContainers, got.Spec.Containers...) {
			var m *corev1.VolumeMount
			for i := range ct.VolumeMounts {
				if ct.VolumeMounts[i].MountPath == path {
					m = &ct.VolumeMounts[i]
				}
			}
			switch {
			case m == nil:
				t.Errorf("%s: container %s has nothing at %s", tt.name, ct.Name, path)
			case tt.ownMount && ct.Name == "b":
				if m.Name != "mine" {
					t.Errorf("%s: container b's own mount replaced by %s", tt.name, m.Name)
				}
			case m.Name != vol.Name || !m.ReadOnly:
				t.Errorf("%s: container %s mount = %+v", tt.name, ct.Name, m)
			}
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// verifyWithJWKS checks token as an outside verifier would: the issuer's
// discovery document names the key set, whose key verifies the signature.
func verifyWithJWKS(t *testing.T, c *testcluster.Cluster, token string) {
	t.Helper()
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, into any) {
		resp, err := hc.Get(c.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	get("/.well-known/openid-configuration", &disc)
	if disc.Issuer != "https://kubernetes.default.svc.cluster.local" || !strings.HasSuffix(disc.JWKSURI, "/openid/v1/jwks") {
		t.Errorf("discovery = %+v", disc)
	}
	var set struct {
		Keys []struct{ Kid, Kty, Crv, X, Y string } `json:"keys"`
	}
	get("/openid/v1/jwks", &set)
	if len(set.Keys) != 1 || set.Keys[0].Kty != "EC" || set.Keys[0].Crv != "P-256" {
		t.Fatalf("jwks = %+v", set)
	}
	dec := base64.RawURLEncoding.DecodeString
	x, _ := dec(set.Keys[0].X)
	y, _ := dec(set.Keys[0].Y)
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
	parts := strings.Split(token, ".")
	sig, _ := dec(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("the published key does not verify the token")
	}
	// The discovery documents are for authenticated callers.
	anon := rest.AnonymousClientConfig(c.Config)
	ahc, _ := rest.HTTPClientFor(anon)
	resp, err := ahc.Get(c.URL + "/openid/v1/jwks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("anonymous GET /openid/v1/jwks = %d, want 401", resp.StatusCode)
	}
}
