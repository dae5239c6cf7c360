package rootcacert_test

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/controller/internal/controllertest"
	"github.com/skiff-org/skiff/pkg/controller/rootcacert"
)

// start runs a cluster and this controller alone on it, with one worker so
// that namespaces are synced in the order their events arrive. It returns
// the cluster's client and its CA, which the controller publishes.
func start(t *testing.T) (kubernetes.Interface, string) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	ca := c.Config.TLSClientConfig.CAData
	if len(ca) == 0 {
		t.Fatal("testcluster admin config has no CA data")
	}
	client := controllertest.Client(c.Config)
	f := informers.NewSharedInformerFactory(client, 0)
	t.Cleanup(controllertest.Run(f, 1, rootcacert.New(client, f, controllertest.Log(), ca)))
	return c.Client, string(ca)
}

func createNamespace(t *testing.T, api kubernetes.Interface, name string) {
	t.Helper()
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := api.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// published waits until ns holds exactly the CA under ca.crt, with the
// description.
func published(t *testing.T, api kubernetes.Interface, ns, ca string) *v1.ConfigMap {
	t.Helper()
	var cm *v1.ConfigMap
	controllertest.Eventually(t, "kube-root-ca.crt published in "+ns, func() (bool, string) {
		var err error
		cm, err = api.CoreV1().ConfigMaps(ns).Get(context.Background(), rootcacert.ConfigMapName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ok := len(cm.Data) == 1 && cm.Data["ca.crt"] == ca && len(cm.BinaryData) == 0 &&
			cm.Annotations["kubernetes.io/description"] == rootcacert.Description
		return ok, fmt.Sprintf("data %q, binaryData %v, annotations %v", cm.Data, cm.BinaryData, cm.Annotations)
	})
	return cm
}

func update(t *testing.T, api kubernetes.Interface, cm *v1.ConfigMap, mutate func(*v1.ConfigMap)) {
	t.Helper()
	cm = cm.DeepCopy()
	mutate(cm)
	if _, err := api.CoreV1().ConfigMaps(cm.Namespace).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestPublishIntegration(t *testing.T) {
	api, ca := start(t)
	ctx := context.Background()

	// Namespaces that exist before the controller starts get it too.
	for _, ns := range []string{"default", "kube-system"} {
		published(t, api, ns, ca)
	}

	tests := []struct {
		name   string
		spoil  func(t *testing.T, cm *v1.ConfigMap) // nil: a new namespace is all
		sameID bool                                 // restored in place, not recreated
	}{
		{"new namespace", nil, true},
		{"data edited", func(t *testing.T, cm *v1.ConfigMap) {
			update(t, api, cm, func(cm *v1.ConfigMap) { cm.Data["ca.crt"] = "not a CA" })
		}, true},
		{"key added", func(t *testing.T, cm *v1.ConfigMap) {
			update(t, api, cm, func(cm *v1.ConfigMap) { cm.Data["extra"] = "x" })
		}, true},
		{"data emptied", func(t *testing.T, cm *v1.ConfigMap) {
			update(t, api, cm, func(cm *v1.ConfigMap) { cm.Data = nil })
		}, true},
		{"description removed", func(t *testing.T, cm *v1.ConfigMap) {
			update(t, api, cm, func(cm *v1.ConfigMap) { cm.Annotations = nil })
		}, true},
		{"deleted", func(t *testing.T, cm *v1.ConfigMap) {
			if err := api.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := fmt.Sprintf("ns-%d", i)
			createNamespace(t, api, ns)
			first := published(t, api, ns, ca)
			if tt.spoil == nil {
				return
			}
			tt.spoil(t, first)
			again := published(t, api, ns, ca)
			if again.ResourceVersion == first.ResourceVersion {
				t.Errorf("resourceVersion %s unchanged: the spoilt copy was never written", again.ResourceVersion)
			}
			if (again.UID == first.UID) != tt.sameID {
				t.Errorf("UID %s -> %s, want same %v", first.UID, again.UID, tt.sameID)
			}
		})
	}
}

// TestTerminatingNamespaceIsLeftAlone edits the ConfigMap of a namespace
// being deleted (no namespace controller runs, so it stays Terminating) and
// then of a live one. With one worker the terminating namespace is synced
// first, so once the live one is restored the other must still hold the edit.
func TestTerminatingNamespaceIsLeftAlone(t *testing.T) {
	api, ca := start(t)
	ctx := context.Background()
	createNamespace(t, api, "leaving")
	createNamespace(t, api, "staying")
	leaving := published(t, api, "leaving", ca)
	staying := published(t, api, "staying", ca)

	if err := api.CoreV1().Namespaces().Delete(ctx, "leaving", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "namespace leaving terminating", func() (bool, string) {
		ns, err := api.CoreV1().Namespaces().Get(ctx, "leaving", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ns.Status.Phase == v1.NamespaceTerminating, fmt.Sprintf("phase %s", ns.Status.Phase)
	})
	update(t, api, leaving, func(cm *v1.ConfigMap) { cm.Data["ca.crt"] = "stale" })
	update(t, api, staying, func(cm *v1.ConfigMap) { cm.Data["ca.crt"] = "stale" })
	published(t, api, "staying", ca)

	got, err := api.CoreV1().ConfigMaps("leaving").Get(ctx, rootcacert.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["ca.crt"] != "stale" {
		t.Errorf("terminating namespace: ca.crt = %q, want the edit %q left alone", got.Data["ca.crt"], "stale")
	}
}
