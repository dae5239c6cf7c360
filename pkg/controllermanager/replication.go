package controllermanager

import (
	"log/slog"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-org/skiff/pkg/controller/deployment"
	"github.com/skiff-org/skiff/pkg/controller/replicaset"
)

// replication returns the ReplicaSet, ReplicationController and Deployment
// controllers.
func replication(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) []controller {
	return []controller{
		{"replicaset", 5, replicaset.NewReplicaSet(client, factory, log)},
		{"replicationcontroller", 5, replicaset.NewReplicationController(client, factory, log)},
		{"deployment", 5, deployment.New(client, factory, log)},
	}
}
