"""OIDC login end to end on a one-controller local stack, with an issuer the test runs itself.

The stack comes up without OIDC; the test then starts an HTTPS issuer (tests/oidc_issuer.py: discovery and JWKS,
a throwaway CA) on the stack's bridge address, sets the `kthw:oidc…` keys, and shows that:
- the change runs again only the files step and the apiserver's step (and updates the drift resource's
  expectations);
- the apiserver fetched discovery and keys from the issuer, and `kubectl auth whoami` with a token the test
  signed shows the mapped user and groups; a token for another audience or signed by another key is refused;
- RBAC decides what the token may do: reading pods in `default` is forbidden until a RoleBinding for its group;
- the admission config is live: Pod Security Admission refuses a privileged pod (enforce baseline) and warns at
  restricted.

Network: the issuer listens on the stack's bridge address only; every request goes to it or to the stack's LB.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

NODE_CIDR = "198.18.0.32/27"  # the checksums and cis suites' subnet: the suites run one after the other
CLIENT_ID = "kthw-e2e"
FILES, APISERVER = (f"kthw-control-plane-controller-0-{s}" for s in ("files", "kube-apiserver"))


def token_kubeconfig(stack, token: str, name: str) -> Path:
    """A kubeconfig for the stack's API (through its LB) that authenticates with `token` only."""
    admin = yaml.safe_load(stack.outputs()["kubeconfig"])
    document = {"apiVersion": "v1", "kind": "Config", "current-context": "oidc",
                "clusters": [{"name": "kthw", "cluster": admin["clusters"][0]["cluster"]}],
                "users": [{"name": "oidc", "user": {"token": token}}],
                "contexts": [{"name": "oidc", "context": {"cluster": "kthw", "user": "oidc"}}]}
    path = stack.workdir / f"{name}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(document))
    return path


def commands(stack) -> dict[str, str]:
    """Each remote command's script in the state (`create`: no secret in it); a command runs again exactly when
    its script changed."""
    resources = json.loads(stack.pulumi("stack", "export", timeout=120).stdout)["deployment"]["resources"]
    return {r["urn"].rsplit("::", 1)[-1]: (r.get("inputs") or {}).get("create") for r in resources
            if r["type"] == "command:remote:Command"}


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    from e2e_lib import TOOLCHAIN_BIN

    return subprocess.run([str(TOOLCHAIN_BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "--request-timeout=10s",
                           *args], text=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def until(what: str, attempt, tries: int = 30, pause: float = 2.0):
    """`attempt()` until it returns something true: at most `tries` times, `pause` s apart; the last result."""
    for _ in range(tries):
        result = attempt()
        if result:
            return result
        time.sleep(pause)
    raise AssertionError(f"{what}: not after {tries} tries ({tries * pause:.0f} s)")


def whoami(kubeconfig: Path) -> dict:
    result = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    return json.loads(result.stdout)["status"]["userInfo"] if result.returncode == 0 else {}


def check_pod_security(stack) -> None:
    """Server-side dry runs as the admin: a privileged pod is refused (enforce baseline), a plain one is admitted
    with restricted's warning (warn restricted)."""
    until("the default service account", lambda: stack.kubectl("get", "serviceaccount", "default", "-n", "default",
                                                               check=False).returncode == 0)

    def pod(name: str, privileged: bool) -> str:
        container = {"name": "c", "image": "registry.invalid/pause:1"}
        if privileged:
            container["securityContext"] = {"privileged": True}
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"containers": [container]}})

    def dry_run(manifest: str) -> subprocess.CompletedProcess:
        from e2e_lib import TOOLCHAIN_BIN

        return subprocess.run([str(TOOLCHAIN_BIN / "kubectl"), "--kubeconfig", str(stack.kubeconfig()),
                               "--request-timeout=20s", "create", "--dry-run=server", "-f", "-"], input=manifest,
                              text=True, capture_output=True, timeout=60)

    refused = dry_run(pod("privileged", True))
    assert refused.returncode != 0 and 'violates PodSecurity "baseline:latest"' in refused.stderr, refused.stderr
    admitted = dry_run(pod("plain", False))
    assert admitted.returncode == 0, admitted.stderr
    assert 'would violate PodSecurity "restricted:latest"' in admitted.stderr, admitted.stderr


@pytest.mark.e2e
def test_oidc_login_and_rbac_on_a_local_stack():
    import oidc_issuer
    from e2e_lib import CHANGING, new_stack

    stack = new_stack("oidc", NODE_CIDR, controllers=1)
    issuer = None
    try:
        stack.up(label="up")
        check_pod_security(stack)
        issuer = oidc_issuer.start(stack.gateway())  # the bridge's address: the controller reaches it
        stack.set_config(oidcIssuerUrl=issuer.url, oidcClientId=CLIENT_ID, oidcGroupsClaim="groups",
                         oidcCaPem=issuer.ca_pem)

        before = commands(stack)
        stack.up(label="up with OIDC")
        after = commands(stack)
        rerun = {name for name, create in after.items() if create != before.get(name)}
        counts = stack.changes()
        print(f"\n[up with the OIDC keys: {counts}; commands run again: {sorted(rerun)}]")
        assert rerun == {FILES, APISERVER}, rerun
        # The two commands and the drift resource (its expectations): updated in place, nothing else.
        assert counts.get("update") == 3 and not set(counts) & (set(CHANGING) - {"update"}), counts
        placed = stack.host(0, "cd /var/lib/kubernetes && stat -c '%a %U %n' admission-config.yaml "
                               "authentication-config.yaml && grep -c '^jwt:' authentication-config.yaml").stdout
        assert placed.split("\n")[:3] == ["600 root admission-config.yaml", "644 root authentication-config.yaml",
                                          "1"], placed

        alice = token_kubeconfig(stack, issuer.token("alice", CLIENT_ID, groups=["dev"]), "alice")
        user = until("kubectl auth whoami with the issuer's token", lambda: whoami(alice))
        print(f"[kubectl auth whoami: {user}]")
        assert user["username"] == "oidc:alice", user
        assert {"oidc:dev", "system:authenticated"} <= set(user["groups"]), user
        fetched = {path for client, path in issuer.requests if client != stack.gateway()}
        assert {"/.well-known/openid-configuration", "/jwks"} <= fetched, issuer.requests

        for name, token in (("other-audience", issuer.token("alice", "someone-else", groups=["dev"])),
                            ("other-key", issuer.token("alice", CLIENT_ID, groups=["dev"],
                                                       key=oidc_issuer.rsa.generate_private_key(65537, 2048)))):
            refused = kubectl(token_kubeconfig(stack, token, name), "auth", "whoami")
            assert refused.returncode != 0 and "Unauthorized" in refused.stderr, (name, refused.stderr)

        forbidden = kubectl(alice, "get", "pods", "-n", "default")
        assert forbidden.returncode != 0 and 'User "oidc:alice" cannot list resource "pods"' in forbidden.stderr, \
            forbidden.stderr
        assert kubectl(alice, "auth", "can-i", "list", "pods", "-n", "default").stdout.strip() == "no"
        stack.kubectl("create", "rolebinding", "oidc-dev-view", "--clusterrole=view", "--group=oidc:dev",
                      "-n", "default")
        until("the RoleBinding to take effect",
              lambda: kubectl(alice, "auth", "can-i", "list", "pods", "-n", "default").stdout.strip() == "yes",
              tries=15, pause=1.0)
        allowed = kubectl(alice, "get", "pods", "-n", "default")
        assert allowed.returncode == 0, allowed.stderr
        elsewhere = kubectl(alice, "get", "pods", "-n", "kube-system")
        assert elsewhere.returncode != 0 and "forbidden" in elsewhere.stderr.lower(), elsewhere.stderr
        print(f"[timings: {stack.timings}]")
    finally:
        if issuer:
            issuer.close()
        stack.cleanup()
