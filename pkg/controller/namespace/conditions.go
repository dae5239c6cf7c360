package namespace

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Outcome is what one pass over a terminating namespace found.
type Outcome struct {
	DiscoveryErr error
	// ParseFailures are group versions discovery returned that did not parse.
	ParseFailures []string
	// DeleteErrs are the errors from deleting content, one per resource.
	DeleteErrs []error
	// Remaining counts objects still present per resource ("pods"), and
	// Finalizers the objects still held per finalizer.
	Remaining  map[string]int
	Finalizers map[string]int
}

// Done reports whether the namespace is empty and its finalizer may go.
func (o Outcome) Done() bool {
	return o.DiscoveryErr == nil && len(o.ParseFailures) == 0 && len(o.DeleteErrs) == 0 && len(o.Remaining) == 0
}

// Conditions merges what o says into cur as Kubernetes reports namespace
// deletion, keeping each condition's transition time while its status holds.
func Conditions(cur []v1.NamespaceCondition, o Outcome, now time.Time) []v1.NamespaceCondition {
	set := func(t v1.NamespaceConditionType, bad bool, badReason, badMsg, okReason, okMsg string) {
		c := v1.NamespaceCondition{Type: t, Status: v1.ConditionFalse, Reason: okReason, Message: okMsg, LastTransitionTime: metav1.NewTime(now)}
		if bad {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, badReason, badMsg
		}
		for i := range cur {
			if cur[i].Type == t {
				if cur[i].Status == c.Status {
					c.LastTransitionTime = cur[i].LastTransitionTime
				}
				cur[i] = c
				return
			}
		}
		cur = append(cur, c)
	}
	cur = slices.Clone(cur)
	discMsg := ""
	if o.DiscoveryErr != nil {
		discMsg = "Discovery failed for some groups: " + o.DiscoveryErr.Error()
	}
	set(v1.NamespaceDeletionDiscoveryFailure, o.DiscoveryErr != nil, "DiscoveryFailed", discMsg, "ResourcesDiscovered", "All resources successfully discovered")
	set(v1.NamespaceDeletionGVParsingFailure, len(o.ParseFailures) > 0, "GroupVersionParsingFailed",
		"Failed to parse group versions: "+strings.Join(o.ParseFailures, ", "), "ParsedGroupVersions", "All legacy kube types successfully parsed")
	var msgs []string
	for _, e := range o.DeleteErrs {
		msgs = append(msgs, e.Error())
	}
	set(v1.NamespaceDeletionContentFailure, len(o.DeleteErrs) > 0, "ContentDeletionFailed",
		"Failed to delete all resource types, "+fmt.Sprint(len(o.DeleteErrs))+" remaining: "+strings.Join(msgs, ", "),
		"ContentDeleted", "All content successfully deleted, may be waiting on finalization")
	set(v1.NamespaceContentRemaining, len(o.Remaining) > 0, "SomeResourcesRemain",
		"Some resources are remaining: "+countList(o.Remaining, "resource instances"), "ContentRemoved", "All content successfully removed")
	set(v1.NamespaceFinalizersRemaining, len(o.Finalizers) > 0, "SomeFinalizersRemain",
		"Some content in the namespace has finalizers remaining: "+countList(o.Finalizers, "resource instances"), "ContentHasNoFinalizers", "All content-preserving finalizers finished")
	return cur
}

// countList renders {"pods": 2} as "pods has 2 resource instances".
func countList(m map[string]int, noun string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s has %d %s", k, m[k], noun))
	}
	return strings.Join(parts, ", ")
}
