//! Where this process stands in a launch, from the launcher's variables ([`Launch`]:
//! torchrun-style `RANK`/`WORLD_SIZE`/`LOCAL_RANK`, else OpenMPI's `OMPI_COMM_WORLD_*`), and
//! the exchange of NCCL's unique id through a file on a folder every process sees
//! ([`write_id_file`], [`read_id_file`]; `MIRAM_NCCL_ID_FILE`). Pure Rust, built without the
//! `nccl` feature, so that it is tested on any machine.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The variable naming the NCCL id file: rank 0 writes NCCL's unique id there, the other
/// ranks read it (a path on a folder every process sees).
pub const ID_FILE_VAR: &str = "MIRAM_NCCL_ID_FILE";

/// How long ranks other than 0 wait for the id file before giving up.
pub const ID_FILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The first line of an id file (its format and version).
const ID_FILE_MAGIC: &str = "miram-nccl-id 1";

/// How often a waiting rank looks for the id file.
const ID_FILE_POLL: Duration = Duration::from_millis(50);

/// Which launcher's variables gave the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// None set: one process.
    Alone,
    /// `RANK` and/or `WORLD_SIZE` (torchrun and launchers like it), `LOCAL_RANK`.
    Torchrun,
    /// OpenMPI's `mpirun`: `OMPI_COMM_WORLD_RANK`, `_SIZE`, `_LOCAL_RANK`.
    OpenMpi,
}

/// This process's place among the processes of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, below `world`.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// The rank among the processes of this machine (`--device cuda` takes that GPU), when
    /// the launcher says.
    pub local_rank: Option<usize>,
    /// Where the numbers came from.
    pub launcher: Launcher,
}

impl Launch {
    /// From the process's environment: see [`Launch::from_vars`].
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From the launcher's variables (`get` reads one): `RANK`, `WORLD_SIZE` and `LOCAL_RANK`
    /// when `RANK` or `WORLD_SIZE` is set (an unset `RANK` is 0, an unset `WORLD_SIZE` 1);
    /// else OpenMPI's `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE` and
    /// `OMPI_COMM_WORLD_LOCAL_RANK` when `OMPI_COMM_WORLD_SIZE` is set; else one process.
    /// A value that is not a number, a world of 0 or a rank not below the world is an error
    /// naming the variables.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let num = |k: &str| -> Result<Option<usize>> {
            match get(k) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Train(format!("{k}={v} is not a number"))),
                None => Ok(None),
            }
        };
        let (launcher, [rank_var, world_var, local_var]) =
            if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
                (Launcher::Torchrun, ["RANK", "WORLD_SIZE", "LOCAL_RANK"])
            } else if get("OMPI_COMM_WORLD_SIZE").is_some() {
                (
                    Launcher::OpenMpi,
                    [
                        "OMPI_COMM_WORLD_RANK",
                        "OMPI_COMM_WORLD_SIZE",
                        "OMPI_COMM_WORLD_LOCAL_RANK",
                    ],
                )
            } else {
                return Ok(Self {
                    rank: 0,
                    world: 1,
                    local_rank: None,
                    launcher: Launcher::Alone,
                });
            };
        let rank = match (num(rank_var)?, launcher) {
            (Some(r), _) => r,
            (None, Launcher::Torchrun) => 0,
            (None, _) => {
                return Err(Error::Train(format!(
                    "{world_var} is set but {rank_var} is not: the launcher gave no rank"
                )))
            }
        };
        let world = num(world_var)?.unwrap_or(1);
        let local_rank = num(local_var)?;
        if world == 0 || rank >= world {
            return Err(Error::Train(format!(
                "{rank_var}={rank} is not below {world_var}={world}"
            )));
        }
        Ok(Self {
            rank,
            world,
            local_rank,
            launcher,
        })
    }
}

/// Writes NCCL's unique id (`id`, its bytes) for a launch of `world` processes to `path`,
/// atomically: to a temporary name in the same folder, then renamed, so that a reader never
/// sees half a file. An earlier file at `path` is replaced.
pub fn write_id_file(path: &Path, world: usize, id: &[u8]) -> Result<()> {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let text = format!("{ID_FILE_MAGIC}\nworld {world}\n{hex}\n");
    let name = path.file_name().ok_or_else(|| {
        Error::Train(format!("{ID_FILE_VAR}={}: not a file name", path.display()))
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let io = |p: &Path, e: std::io::Error| Error::Io {
        path: p.to_path_buf(),
        source: e,
    };
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Reads the id of `len` bytes that rank 0 wrote to `path` for a launch of `world`
/// processes, waiting for the file (polling) up to `timeout`. A file for another number of
/// processes or not in the format is waited past (rank 0 may still replace a stale one); at
/// the timeout the error names the file, the variable and what was found.
pub fn read_id_file(path: &Path, world: usize, len: usize, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        let found = match std::fs::read_to_string(path) {
            Ok(text) => match parse_id_file(&text, len) {
                Ok((w, id)) if w == world => return Ok(id),
                Ok((w, _)) => format!("it was written for {w} processes, not {world}"),
                Err(why) => why,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it does not exist".into(),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(Error::Train(format!(
                "waited {:.0} s for rank 0's NCCL id in {} ({ID_FILE_VAR}), but {found}: start rank 0 with the same {ID_FILE_VAR}, on a folder every process sees",
                timeout.as_secs_f64(),
                path.display()
            )));
        }
        std::thread::sleep(ID_FILE_POLL.min(timeout.saturating_sub(start.elapsed())));
    }
}

/// The world size and id bytes of an id file's text, or why it is not one.
fn parse_id_file(text: &str, len: usize) -> std::result::Result<(usize, Vec<u8>), String> {
    let mut lines = text.lines();
    if lines.next() != Some(ID_FILE_MAGIC) {
        return Err(format!("it does not start with `{ID_FILE_MAGIC}`"));
    }
    let world = lines
        .next()
        .and_then(|l| l.strip_prefix("world "))
        .and_then(|w| w.parse().ok())
        .ok_or("its second line is not `world N`")?;
    let hex = lines.next().unwrap_or("");
    if hex.len() != 2 * len || !hex.is_ascii() {
        return Err(format!("its id is not {len} bytes in hexadecimal"));
    }
    let id = (0..len)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| format!("its id is not {len} bytes in hexadecimal"))?;
    Ok((world, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    fn err(r: Result<Launch>) -> String {
        match r {
            Ok(l) => panic!("expected an error, got {l:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_launcher_is_one_process() {
        let l = launch(&[]).expect("empty environment");
        assert_eq!((l.rank, l.world, l.local_rank), (0, 1, None));
        assert_eq!(l.launcher, Launcher::Alone);
    }

    #[test]
    fn torchrun_variables_give_rank_world_and_local_rank() {
        let l =
            launch(&[("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1")]).expect("torchrun");
        assert_eq!((l.rank, l.world, l.local_rank), (3, 8, Some(1)));
        assert_eq!(l.launcher, Launcher::Torchrun);
        // The torchrun variables win over OpenMPI's.
        let l = launch(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
        ])
        .expect("both");
        assert_eq!((l.rank, l.world, l.launcher), (1, 2, Launcher::Torchrun));
        // As before this module: an unset RANK is 0, an unset WORLD_SIZE 1.
        let l = launch(&[("WORLD_SIZE", "2")]).expect("world only");
        assert_eq!((l.rank, l.world), (0, 2));
        let l = launch(&[("RANK", "0")]).expect("rank only");
        assert_eq!((l.rank, l.world), (0, 1));
    }

    #[test]
    fn openmpi_variables_are_read_without_torchrun_ones() {
        let l = launch(&[
            ("OMPI_COMM_WORLD_RANK", "5"),
            ("OMPI_COMM_WORLD_SIZE", "6"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "2"),
        ])
        .expect("mpirun");
        assert_eq!((l.rank, l.world, l.local_rank), (5, 6, Some(2)));
        assert_eq!(l.launcher, Launcher::OpenMpi);
        let e = err(launch(&[("OMPI_COMM_WORLD_SIZE", "2")]));
        assert!(e.contains("OMPI_COMM_WORLD_RANK is not"), "{e}");
    }

    #[test]
    fn invalid_variables_are_errors_naming_them() {
        let e = err(launch(&[("RANK", "one"), ("WORLD_SIZE", "2")]));
        assert!(e.contains("RANK=one is not a number"), "{e}");
        let e = err(launch(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_RANK", "-1"),
        ]));
        assert!(e.contains("LOCAL_RANK=-1 is not a number"), "{e}");
        let e = err(launch(&[("RANK", "2"), ("WORLD_SIZE", "2")]));
        assert!(e.contains("RANK=2 is not below WORLD_SIZE=2"), "{e}");
        let e = err(launch(&[("RANK", "1")]));
        assert!(e.contains("RANK=1 is not below WORLD_SIZE=1"), "{e}");
        let e = err(launch(&[("WORLD_SIZE", "0")]));
        assert!(e.contains("RANK=0 is not below WORLD_SIZE=0"), "{e}");
        let e = err(launch(&[
            ("OMPI_COMM_WORLD_RANK", "4"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
        ]));
        assert!(
            e.contains("OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4"),
            "{e}"
        );
    }

    #[test]
    fn the_id_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nccl-id");
        let id: Vec<u8> = (0..128u32).map(|i| (i * 7 + 3) as u8).collect();
        write_id_file(&path, 4, &id).expect("write");
        let text = std::fs::read_to_string(&path).expect("read text");
        // The first two id bytes, 3 and 10, in hexadecimal.
        assert!(text.starts_with("miram-nccl-id 1\nworld 4\n030a"), "{text}");
        assert_eq!(
            read_id_file(&path, 4, 128, Duration::ZERO).expect("read"),
            id
        );
        // Nothing but the file itself is left in the folder (the temporary name is renamed).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["nccl-id"]);
        // A second write replaces the first.
        let other = vec![0xffu8; 128];
        write_id_file(&path, 4, &other).expect("rewrite");
        assert_eq!(
            read_id_file(&path, 4, 128, Duration::ZERO).expect("reread"),
            other
        );
    }

    #[test]
    fn a_reader_waits_for_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("id");
        let id = vec![42u8; 16];
        let writer = {
            let (path, id) = (path.clone(), id.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                write_id_file(&path, 2, &id)
            })
        };
        let start = Instant::now();
        let got = read_id_file(&path, 2, 16, Duration::from_secs(30)).expect("read");
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(got, id);
        writer.join().expect("join").expect("write");
    }

    #[test]
    fn a_missing_file_times_out_naming_the_file_and_the_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("never");
        let start = Instant::now();
        let e = read_id_file(&path, 2, 128, Duration::from_millis(150))
            .expect_err("no file")
            .to_string();
        assert!(start.elapsed() >= Duration::from_millis(150));
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("MIRAM_NCCL_ID_FILE"), "{e}");
        assert!(e.contains("it does not exist"), "{e}");
    }

    #[test]
    fn a_file_for_another_launch_or_format_is_not_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("id");
        write_id_file(&path, 3, &[1u8; 128]).expect("write");
        let e = read_id_file(&path, 2, 128, Duration::from_millis(60))
            .expect_err("another world")
            .to_string();
        assert!(e.contains("written for 3 processes, not 2"), "{e}");
        std::fs::write(&path, "miram-nccl-id 1\nworld 2\nzz\n").expect("write");
        let e = read_id_file(&path, 2, 1, Duration::ZERO)
            .expect_err("bad hex")
            .to_string();
        assert!(e.contains("not 1 bytes in hexadecimal"), "{e}");
        std::fs::write(&path, "something else").expect("write");
        let e = read_id_file(&path, 2, 1, Duration::ZERO)
            .expect_err("bad magic")
            .to_string();
        assert!(e.contains("does not start with `miram-nccl-id 1`"), "{e}");
    }
}
