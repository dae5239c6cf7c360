package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-org/skiff/pkg/satoken"
)

// Service account tokens: the serviceaccounts/token subresource (the
// TokenRequest API, behind `kubectl create token` and the kubelet's
// projected token volumes) and the authentication of the tokens it issues.

var serviceAccountsGVR = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}

const (
	defaultTokenSeconds = 3600           // when a request names no expirationSeconds
	minTokenSeconds     = 10 * 60        // Kubernetes refuses shorter tokens
	maxTokenSeconds     = math.MaxUint32 // and longer than 2^32 seconds
)

// requestToken serves POST .../serviceaccounts/NAME/token.
func (s *Server) requestToken(w http.ResponseWriter, r *http.Request, req request) {
	signer := s.cfg.ServiceAccountTokens
	if signer == nil {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	gvk := authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
	tr := &authenticationv1.TokenRequest{}
	if err := decodePlain(body, r.Header.Get("Content-Type"), gvk, tr); err != nil {
		writeError(w, r, err)
		return
	}
	ctx := r.Context()
	saObj, err := s.getObject(ctx, s.lookup(serviceAccountsGVR), req.namespace, req.name, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	sa := saObj.(*corev1.ServiceAccount)

	if tr.Spec.ExpirationSeconds == nil {
		tr.Spec.ExpirationSeconds = new(int64)
		*tr.Spec.ExpirationSeconds = defaultTokenSeconds
	}
	if len(tr.Spec.Audiences) == 0 {
		tr.Spec.Audiences = []string{signer.Issuer}
	}
	var errs field.ErrorList
	switch exp := *tr.Spec.ExpirationSeconds; {
	case exp < minTokenSeconds:
		errs = append(errs, field.Invalid(field.NewPath("spec", "expirationSeconds"), exp, "may not specify a duration less than 10 minutes"))
	case exp > maxTokenSeconds:
		errs = append(errs, field.Invalid(field.NewPath("spec", "expirationSeconds"), exp, "may not specify a duration larger than 2^32 seconds"))
	}
	if len(errs) > 0 {
		writeError(w, r, apierrors.NewInvalid(gvk.GroupKind(), req.name, errs))
		return
	}

	now := s.now()
	claims := satoken.Claims{
		Subject:   satoken.Username(sa.Namespace, sa.Name),
		Audience:  tr.Spec.Audiences,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		Expiry:    now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second).Unix(),
		ID:        newTokenID(),
		Kube: satoken.KubeClaims{Namespace: sa.Namespace,
			ServiceAccount: satoken.Ref{Name: sa.Name, UID: string(sa.UID)}},
	}
	if ref := tr.Spec.BoundObjectRef; ref != nil {
		if err := s.bindToken(r, req.namespace, ref, &claims.Kube); err != nil {
			writeError(w, r, err)
			return
		}
	}
	tok, err := signer.Sign(claims)
	if err != nil {
		writeError(w, r, err)
		return
	}
	tr.ObjectMeta = metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace, CreationTimestamp: metav1.NewTime(now)}
	tr.Status = authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(time.Unix(claims.Expiry, 0))}
	tr.SetGroupVersionKind(gvk)
	o := negotiate(r)
	w.Header().Set("Content-Type", o.mediaType)
	w.WriteHeader(http.StatusCreated)
	_ = o.encoder.Encode(tr, w)
}

// bindToken ties a token to a pod or secret in the namespace, so that it
// stops working when that object goes; a pod's node is named too.
func (s *Server) bindToken(r *http.Request, ns string, ref *authenticationv1.BoundObjectReference, kc *satoken.KubeClaims) error {
	if ref.APIVersion != "" && ref.APIVersion != "v1" || ref.Kind != "Pod" && ref.Kind != "Secret" {
		return badRequest("cannot bind token to object of type %s", schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	}
	gvr := podsGVR
	if ref.Kind == "Secret" {
		gvr = gvr.GroupVersion().WithResource("secrets")
	}
	obj, err := s.getObject(r.Context(), s.lookup(gvr), ns, ref.Name, "")
	if err != nil {
		return err
	}
	m := mustMeta(obj)
	if ref.UID != "" && ref.UID != m.GetUID() {
		return apierrors.NewConflict(schema.GroupResource{Resource: ref.Kind}, ref.Name,
			fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
	}
	bound := &satoken.Ref{Name: m.GetName(), UID: string(m.GetUID())}
	if pod, ok := obj.(*corev1.Pod); ok {
		kc.Pod = bound
		if pod.Spec.NodeName != "" {
			kc.Node = &satoken.Ref{Name: pod.Spec.NodeName}
			if n, ok := s.lookup(nodesGVR).cache.Get(s.lookup(nodesGVR).key("", pod.Spec.NodeName)); ok {
				kc.Node.UID = string(mustMeta(n.Object).GetUID())
			}
		}
	} else {
		kc.Secret = bound
	}
	return nil
}

func newTokenID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tokenUser authenticates a service account token: a valid signature and
// audience, and the service account and any bound object still there with the
// uid the token names. Those are read from the watch caches, and from etcd
// when the cache has not seen them yet (a token asked for right after its
// account was created).
func (s *Server) tokenUser(ctx context.Context, tok string) (authenticationv1.UserInfo, bool) {
	signer := s.cfg.ServiceAccountTokens
	if signer == nil {
		return authenticationv1.UserInfo{}, false
	}
	c, err := signer.Verify(tok, signer.Issuer, s.now())
	if err != nil {
		return authenticationv1.UserInfo{}, false
	}
	kc := c.Kube
	live := func(gvr schema.GroupVersionResource, name, uid string) bool {
		res := s.lookup(gvr)
		var obj runtime.Object
		if e, ok := res.cache.Get(res.key(kc.Namespace, name)); ok && string(mustMeta(e.Object).GetUID()) == uid {
			obj = e.Object
		} else if obj, err = s.getObject(ctx, res, kc.Namespace, name, ""); err != nil {
			return false
		}
		m := mustMeta(obj)
		return string(m.GetUID()) == uid && m.GetDeletionTimestamp() == nil
	}
	if !live(serviceAccountsGVR, kc.ServiceAccount.Name, kc.ServiceAccount.UID) {
		return authenticationv1.UserInfo{}, false
	}
	u := authenticationv1.UserInfo{
		Username: satoken.Username(kc.Namespace, kc.ServiceAccount.Name),
		UID:      kc.ServiceAccount.UID,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + kc.Namespace, "system:authenticated"},
		Extra:    map[string]authenticationv1.ExtraValue{},
	}
	if c.ID != "" {
		u.Extra["authentication.kubernetes.io/credential-id"] = authenticationv1.ExtraValue{"JTI=" + c.ID}
	}
	if p := kc.Pod; p != nil {
		if !live(podsGVR, p.Name, p.UID) {
			return authenticationv1.UserInfo{}, false
		}
		u.Extra["authentication.kubernetes.io/pod-name"] = authenticationv1.ExtraValue{p.Name}
		u.Extra["authentication.kubernetes.io/pod-uid"] = authenticationv1.ExtraValue{p.UID}
	}
	if sec := kc.Secret; sec != nil && !live(podsGVR.GroupVersion().WithResource("secrets"), sec.Name, sec.UID) {
		return authenticationv1.UserInfo{}, false
	}
	if n := kc.Node; n != nil {
		u.Extra["authentication.kubernetes.io/node-name"] = authenticationv1.ExtraValue{n.Name}
		if n.UID != "" {
			u.Extra["authentication.kubernetes.io/node-uid"] = authenticationv1.ExtraValue{n.UID}
		}
	}
	return u, true
}
