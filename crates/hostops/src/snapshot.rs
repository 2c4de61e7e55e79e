//! Snapshot providers: btrfs subvolumes, qcow2 images, LVM, and a command
//! hook for everything else (cloud snapshots, AMIs, `virsh snapshot-create`).
//!
//! | provider | runs on | restore takes effect | tested here |
//! |---|---|---|---|
//! | qcow2 (`qemu-img snapshot`) | this machine (the hypervisor) | at the VM's next boot; the VM must be off | yes, with the real qemu-img |
//! | btrfs (`btrfs subvolume snapshot`) | the host | now for a data subvolume (swapped in place); next boot for `/` (set-default) | when a btrfs file system can be mounted |
//! | lvm (`lvcreate -s`, `lvconvert --merge`) | the host | at the next activation of the origin (reboot for `/`) | no: documented only |
//! | command | this machine | now (bulkhead verifies the package state after it) | yes |

use crate::host::{Host, HostCmd};
use patch::{Effective, SnapshotSpec};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(1800);

/// Creates, restores, lists and deletes snapshots of one host.
#[derive(Debug)]
pub struct Snapshots<'a> {
    pub spec: &'a SnapshotSpec,
    pub host: &'a Host,
}

fn local(program: &str) -> HostCmd {
    HostCmd::new(program)
}

impl Snapshots<'_> {
    /// Runs a provider command: on this machine for qcow2 and command hooks,
    /// on the host for btrfs and LVM.
    fn run(&self, cmd: &HostCmd) -> Result<String, String> {
        let out = match self.spec {
            SnapshotSpec::Qcow2 { .. } | SnapshotSpec::Command { .. } => {
                let mut c = Command::new(&cmd.program);
                c.args(&cmd.args).envs(cmd.env.iter().map(|(k, v)| (k, v)));
                crate::exec::run(&mut c, TIMEOUT).map_err(|e| e.to_string())?
            }
            _ => self.host.run(cmd, TIMEOUT).map_err(|e| e.to_string())?,
        };
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "{} exited with {:?}: {}",
                cmd.program,
                out.code,
                out.tail()
            ))
        }
    }

    fn hook(&self, script: &str, name: &str, id: &str) -> HostCmd {
        local("sh")
            .arg("-c")
            .arg(script)
            .env("BULKHEAD_HOST", self.host.name.clone())
            .env("BULKHEAD_ROOT", self.host.root_text())
            .env("BULKHEAD_SNAPSHOT_NAME", name)
            .env("BULKHEAD_SNAPSHOT_ID", id)
    }

    /// Takes a snapshot called `name`; returns its id.
    ///
    /// # Errors
    ///
    /// The provider's failure.
    pub fn create(&self, name: &str) -> Result<String, String> {
        match self.spec {
            SnapshotSpec::Qcow2 { image } => {
                self.run(&local("qemu-img").args(["snapshot", "-c", name, image.as_str()]))?;
                Ok(name.to_string())
            }
            SnapshotSpec::Btrfs { subvolume, dir } => {
                let id = format!("{}/{name}", dir.trim_end_matches('/'));
                self.run(&HostCmd::new("mkdir").args(["-p", dir.as_str()]))?;
                self.run(&HostCmd::new("btrfs").args([
                    "subvolume",
                    "snapshot",
                    "-r",
                    subvolume.as_str(),
                    id.as_str(),
                ]))?;
                Ok(id)
            }
            SnapshotSpec::Lvm { volume, size } => {
                let vg = volume.split('/').next().unwrap_or(volume);
                self.run(&HostCmd::new("lvcreate").args([
                    "--snapshot",
                    "--name",
                    name,
                    "--size",
                    size.as_str(),
                    volume.as_str(),
                ]))?;
                Ok(format!("{vg}/{name}"))
            }
            SnapshotSpec::Command { create, .. } => {
                let out = self.run(&self.hook(create, name, ""))?;
                out.lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| "the create hook printed no snapshot id".into())
            }
        }
    }

    /// Restores snapshot `id`.
    ///
    /// # Errors
    ///
    /// The provider's failure.
    pub fn restore(&self, id: &str) -> Result<Effective, String> {
        match self.spec {
            SnapshotSpec::Qcow2 { image } => {
                self.run(&local("qemu-img").args(["snapshot", "-a", id, image.as_str()]))?;
                Ok(Effective::AtNextBoot)
            }
            SnapshotSpec::Btrfs { subvolume, .. } if subvolume == "/" => {
                // The running root cannot be swapped: make a writable copy the default subvolume.
                let copy = format!("{id}-restored");
                self.run(&HostCmd::new("btrfs").args([
                    "subvolume",
                    "snapshot",
                    id,
                    copy.as_str(),
                ]))?;
                self.run(&HostCmd::new("btrfs").args(["subvolume", "set-default", copy.as_str()]))?;
                Ok(Effective::AtNextBoot)
            }
            SnapshotSpec::Btrfs { subvolume, .. } => {
                let aside = format!("{}.before-rollback", subvolume.trim_end_matches('/'));
                let _ =
                    self.run(&HostCmd::new("btrfs").args(["subvolume", "delete", aside.as_str()]));
                self.run(&HostCmd::new("mv").args(["-T", subvolume.as_str(), aside.as_str()]))?;
                if let Err(e) = self.run(&HostCmd::new("btrfs").args([
                    "subvolume",
                    "snapshot",
                    id,
                    subvolume.as_str(),
                ])) {
                    let _ = self.run(&HostCmd::new("mv").args([
                        "-T",
                        aside.as_str(),
                        subvolume.as_str(),
                    ]));
                    return Err(e);
                }
                self.run(&HostCmd::new("btrfs").args(["subvolume", "delete", aside.as_str()]))?;
                Ok(Effective::Now)
            }
            SnapshotSpec::Lvm { .. } => {
                self.run(&HostCmd::new("lvconvert").args(["--merge", id]))?;
                Ok(Effective::AtNextBoot)
            }
            SnapshotSpec::Command { restore, .. } => {
                self.run(&self.hook(restore, "", id))?;
                Ok(Effective::Now)
            }
        }
    }

    /// Deletes snapshot `id` (command hooks without `delete` keep it).
    ///
    /// # Errors
    ///
    /// The provider's failure.
    pub fn delete(&self, id: &str) -> Result<(), String> {
        match self.spec {
            SnapshotSpec::Qcow2 { image } => self
                .run(&local("qemu-img").args(["snapshot", "-d", id, image.as_str()]))
                .map(|_| ()),
            SnapshotSpec::Btrfs { .. } => self
                .run(&HostCmd::new("btrfs").args(["subvolume", "delete", id]))
                .map(|_| ()),
            SnapshotSpec::Lvm { .. } => self
                .run(&HostCmd::new("lvremove").args(["-y", id]))
                .map(|_| ()),
            SnapshotSpec::Command {
                delete: Some(script),
                ..
            } => self.run(&self.hook(script, "", id)).map(|_| ()),
            SnapshotSpec::Command { delete: None, .. } => Ok(()),
        }
    }

    /// The snapshots the provider knows (empty for command hooks).
    ///
    /// # Errors
    ///
    /// The provider's failure.
    pub fn list(&self) -> Result<Vec<String>, String> {
        match self.spec {
            SnapshotSpec::Qcow2 { image } => {
                let out = self.run(&local("qemu-img").args([
                    "info",
                    "--force-share",
                    "--output=json",
                    image.as_str(),
                ]))?;
                let info: serde_json::Value =
                    serde_json::from_str(&out).map_err(|e| format!("qemu-img info output: {e}"))?;
                Ok(info["snapshots"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            SnapshotSpec::Btrfs { dir, .. } => {
                // The snapshot folder holds only our snapshots; `subvolume list -o` would
                // list every subvolume of the parent file system.
                let script = format!(
                    "[ -d {d} ] && ls -1 {d} || true",
                    d = crate::exec::shell_quote(dir)
                );
                let out = self.run(&HostCmd::new("sh").arg("-c").arg(script))?;
                Ok(out
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
                    .collect())
            }
            SnapshotSpec::Lvm { volume, .. } => {
                let vg = volume.split('/').next().unwrap_or(volume);
                let out = self.run(&HostCmd::new("lvs").args([
                    "--noheadings",
                    "-o",
                    "lv_name,origin",
                    vg,
                ]))?;
                Ok(out
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        (f.len() == 2).then(|| format!("{vg}/{}", f[0]))
                    })
                    .collect())
            }
            SnapshotSpec::Command { .. } => Ok(Vec::new()),
        }
    }
}
