"""Drives a real workspaced release binary from Python, with stubs generated from proto/ at
test time by grpcio-tools, as a Python client of the service would.

WORKSPACED_BIN names the binary (default: target/release/workspaced).
"""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("WORKSPACED_BIN", str(ROOT / "target" / "release" / "workspaced"))


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """Generates the stubs into a temporary directory and imports them."""
    out = tmp_path_factory.mktemp("stubs")
    wkt = Path(protoc.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{wkt}",
         f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    )
    assert code == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from workspaced.v1 import (  # noqa: PLC0415 - generated just above
        common_pb2, membership_pb2, membership_pb2_grpc, policy_pb2, policy_pb2_grpc,
        workspace_pb2, workspace_pb2_grpc,
    )
    return type("pb", (), dict(
        common=common_pb2, membership=membership_pb2, membership_grpc=membership_pb2_grpc,
        policy=policy_pb2, policy_grpc=policy_pb2_grpc,
        workspace=workspace_pb2, workspace_grpc=workspace_pb2_grpc,
    ))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Starts the binary on a free port with its own database and key."""
    d = tmp_path_factory.mktemp("server")
    key = d / "key"
    key.write_text(secrets.token_hex(32))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", addr, "--database-url", f"sqlite://{d / 'py.db'}?mode=rwc",
         "--jwt-hs256-secret-file", str(key)],
        stderr=subprocess.DEVNULL,
    )
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=30)

    def token(subject, *roles):
        args = [BIN, "token", "--subject", subject, "--email", f"{subject}@example.com",
                "--jwt-hs256-secret-file", str(key)]
        for r in roles:
            args += ["--role", r]
        return subprocess.check_output(args, text=True).strip()

    yield channel, token
    channel.close()
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "serve did not exit 0 on SIGTERM"


def auth(tok):
    return (("authorization", f"Bearer {tok}"),)


def test_a_full_flow(pb, server):
    channel, token = server
    ws = pb.workspace_grpc.WorkspaceServiceStub(channel)
    members = pb.membership_grpc.MembershipServiceStub(channel)
    policies = pb.policy_grpc.PolicyServiceStub(channel)
    alice, bob, root = token("alice"), token("bob"), token("root", "platform-admin")

    # Create a workspace.
    created = ws.CreateWorkspace(
        pb.workspace.CreateWorkspaceRequest(
            workspace=pb.workspace.Workspace(name="py-team", display_name="Python team")),
        metadata=auth(alice)).workspace
    assert created.name == "py-team"
    assert created.visibility == pb.common.VISIBILITY_PRIVATE

    # Add a member by email: bob signs in first, so his email is known.
    ws.GetWorkspace(pb.workspace.GetWorkspaceRequest(name="default"), metadata=auth(bob))
    member = members.AddMember(
        pb.membership.AddMemberRequest(
            workspace="py-team", email="bob@example.com", role=pb.common.ROLE_EDITOR),
        metadata=auth(alice)).member
    assert member.subject == "bob"
    assert member.role == pb.common.ROLE_EDITOR

    # Register a resource as bob, the editor.
    res = ws.RegisterResource(
        pb.workspace.RegisterResourceRequest(workspace="py-team", kind="model", resource_id="bert"),
        metadata=auth(bob)).resource
    assert res.registered_by == "bob"

    # DeleteWorkspace is refused while it holds resources, with PreconditionFailure details.
    with pytest.raises(grpc.RpcError) as refused:
        ws.DeleteWorkspace(pb.workspace.DeleteWorkspaceRequest(name="py-team"), metadata=auth(alice))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(refused.value)
    info, failure = error_details_pb2.ErrorInfo(), error_details_pb2.PreconditionFailure()
    kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
    assert {"google.rpc.ErrorInfo", "google.rpc.PreconditionFailure"} <= kinds
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            d.Unpack(info)
        if d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            d.Unpack(failure)
    assert (info.reason, info.domain) == ("WORKSPACE_NOT_EMPTY", "workspaced")
    assert [v.subject for v in failure.violations] == ["model"]

    # Update the policy as a platform admin, then check GPU pod requests against it.
    updated = policies.UpdatePolicy(
        pb.policy.UpdatePolicyRequest(
            policy=pb.policy.Policy(
                workspace="py-team",
                global_gpu_constraints=pb.policy.GpuConstraints(gpu_shapes=["a100"], max_gpu_per_gpr=2)),
            update_mask={"paths": ["global_gpu_constraints"]}),
        metadata=auth(root)).policy
    assert list(updated.global_gpu_constraints.gpu_shapes) == ["a100"]
    ok = policies.CheckGpuQuota(
        pb.policy.CheckGpuQuotaRequest(workspace="py-team", gpu_shape="a100", gpu_count=2),
        metadata=auth(bob))
    assert ok.allowed and not ok.violations
    too_many = policies.CheckGpuQuota(
        pb.policy.CheckGpuQuotaRequest(workspace="py-team", gpu_shape="a100", gpu_count=3),
        metadata=auth(bob))
    assert not too_many.allowed
    assert [v.field for v in too_many.violations] == ["gpu_count"]

    # Page through ListWorkspaces.
    for i in range(12):
        ws.CreateWorkspace(
            pb.workspace.CreateWorkspaceRequest(workspace=pb.workspace.Workspace(name=f"py-{i:02d}")),
            metadata=auth(alice))
    names, page_token = [], ""
    while True:
        page = ws.ListWorkspaces(
            pb.workspace.ListWorkspacesRequest(page_size=5, page_token=page_token), metadata=auth(alice))
        assert page.total_size == 15
        names += [w.name for w in page.workspaces]
        page_token = page.next_page_token
        if not page_token:
            break
    assert names == sorted(names) and len(names) == len(set(names)) == 15


def test_bad_input_is_invalid_argument_with_field_violations(pb, server):
    channel, token = server
    ws = pb.workspace_grpc.WorkspaceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as bad:
        ws.CreateWorkspace(
            pb.workspace.CreateWorkspaceRequest(
                workspace=pb.workspace.Workspace(name="Bad Name", display_name="x" * 101)),
            metadata=auth(token("alice")))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = error_details_pb2.BadRequest()
    for d in rpc_status.from_call(bad.value).details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            d.Unpack(request)
    assert sorted(v.field for v in request.field_violations) == [
        "workspace.display_name", "workspace.name"]
