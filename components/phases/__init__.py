"""The bootstrap's phases, one module each (kubeadm's phases); `components.control_plane` wires them in order.

    remote          the step runner: one idempotent remote command per (node, step), run as root
    components      the table of services (unit, health, first start, restart, delete)
    cluster         what every phase reads (config, hosts, PKI, digests, each node's files and units)
    binaries        download, verify and install the release binaries (etcd's apart)
    files           every node's certificates, keys, kubeconfigs and configs (the PKI's file table)
    service         install and (re)start one service of the table, rolling
    etcd            founders or joiners, and the quorum wait
    backup          the snapshot timer, and a new cluster's start from a snapshot
    apiserver       Secrets rewritten with a new encryption key
    healthz_proxy   nginx /healthz for a plain-HTTP LB health check (GCP)
    rbac            cluster-wide RBAC
    verify          the API through the load balancer
    observe         what the drift probe expects on each node
"""
