package endpoints

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestPodHandler(t *testing.T) {
	svc := func(name string, selector map[string]string) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1.ServiceSpec{Selector: selector}}
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range []*v1.Service{svc("web", map[string]string{"app": "web"}), svc("db", map[string]string{"app": "db"}), svc("manual", nil)} {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(app, rv string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: map[string]string{"app": app}, ResourceVersion: rv}}
	}
	tests := []struct {
		name  string
		event func(h cache.ResourceEventHandlerFuncs)
		want  []string
	}{
		{"add", func(h cache.ResourceEventHandlerFuncs) { h.OnAdd(pod("web", "1"), false) }, []string{"ns/web"}},
		{"relabel leaves the old service", func(h cache.ResourceEventHandlerFuncs) { h.OnUpdate(pod("web", "1"), pod("db", "2")) }, []string{"ns/db", "ns/web"}},
		{"resync", func(h cache.ResourceEventHandlerFuncs) { h.OnUpdate(pod("web", "1"), pod("web", "1")) }, nil},
		{"delete tombstone", func(h cache.ResourceEventHandlerFuncs) {
			h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod("db", "3")})
		}, []string{"ns/db"}},
		{"selected by nothing", func(h cache.ResourceEventHandlerFuncs) { h.OnAdd(pod("cache", "1"), false) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			tt.event(PodHandler(corelisters.NewServiceLister(idx), func(key string) { got = append(got, key) }))
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("PodHandler queued %v, want %v", got, tt.want)
			}
		})
	}
}
