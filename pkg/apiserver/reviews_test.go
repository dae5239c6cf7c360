package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestReviews checks the self-reviews kubectl auth can-i and whoami send:
// allowed (no authorization yet), the caller's own identity, and create only.
func TestReviews(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	ssar, err := c.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: "default"}},
	}, metav1.CreateOptions{})
	if err != nil || !ssar.Status.Allowed || ssar.Spec.ResourceAttributes.Verb != "delete" {
		t.Fatalf("SelfSubjectAccessReview = %v, %+v", err, ssar)
	}
	rules, err := c.Client.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "default"}}, metav1.CreateOptions{})
	if err != nil || len(rules.Status.ResourceRules) != 1 || rules.Status.ResourceRules[0].Verbs[0] != "*" {
		t.Fatalf("SelfSubjectRulesReview = %v, %+v", err, rules)
	}
	who, err := c.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || who.Status.UserInfo.Username != "admin" {
		t.Fatalf("SelfSubjectReview = %v, %+v", err, who)
	}
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(c.URL + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET selfsubjectaccessreviews = %d, want 405", resp.StatusCode)
	}
}
