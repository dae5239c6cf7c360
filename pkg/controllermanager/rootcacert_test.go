package controllermanager_test

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/rootcacert"
	"github.com/skiff-org/skiff/pkg/controller/serviceaccount"
)

// The server hands its CA to the controller manager, which publishes it in
// every namespace: the CA that verifies the API server's certificate.
func TestServerPublishesRootCA(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Controllers: true})
	ca := string(c.Config.TLSClientConfig.CAData)
	createNamespace(t, c.Client, "apps")
	for _, ns := range []string{"default", "kube-system", "apps"} {
		eventually(t, 30*time.Second, "kube-root-ca.crt in "+ns, func() (bool, error) {
			cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(context.Background(), rootcacert.ConfigMapName, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return cm.Data["ca.crt"] == ca, nil
		})
	}
}

// Without a CA the publisher does not run: a namespace gets its default
// service account, but no kube-root-ca.crt with an empty CA.
func TestNoRootCANoPublisher(t *testing.T) {
	c, ctx := start(t, nil)
	createNamespace(t, c.Client, "apps")
	eventually(t, 30*time.Second, "default service account in apps", func() (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("apps").Get(ctx, serviceaccount.DefaultName, metav1.GetOptions{})
		return err == nil, err
	})
	_, err := c.Client.CoreV1().ConfigMaps("apps").Get(ctx, rootcacert.ConfigMapName, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("Get(kube-root-ca.crt) = %v, want NotFound with no RootCA", err)
	}
}
