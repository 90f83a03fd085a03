//! The table `custodian inspect` prints for people: `Display` for an [`Inspection`].

use std::fmt;

use super::Inspection;

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pid {} ({}), up {:.1?}, temp root {}, containment: {}",
            self.pid,
            self.state,
            self.uptime,
            self.temp_root.display(),
            self.stats.containment
        )?;
        writeln!(
            f,
            "{:>6}  {:<12} {:<16} {:<20} {:>10}  SITE / PATH",
            "ID", "KIND", "LABEL", "SCOPE", "AGE"
        )?;
        for r in &self.live {
            let age = format!("{:.1?}", r.age);
            write!(
                f,
                "{:>6}  {:<12} {:<16} {:<20} {:>10}  {}",
                r.id,
                r.kind.as_str(),
                r.label,
                r.scope,
                age,
                r.site
            )?;
            if let Some(p) = &r.path {
                write!(f, "  {}", p.display())?;
            }
            if let Some(pid) = r.pid {
                write!(f, "  pid {pid}")?;
                if let Some(g) = r.pgid {
                    write!(f, " group {g}")?;
                }
                if let Some(c) = &r.cgroup {
                    write!(f, " cgroup {}", c.display())?;
                }
                if r.reaped {
                    f.write_str(" (reaped)")?;
                }
            }
            writeln!(f)?;
        }
        if self.live_total > self.live.len() {
            writeln!(f, "  ... and {} more", self.live_total - self.live.len())?;
        }
        if !self.scope_tree.is_empty() {
            writeln!(f, "scopes holding resources, and their parents:")?;
        }
        for s in &self.scope_tree {
            let indent = 2 * s.depth.min(20) + 2;
            write!(f, "{:indent$}{} #{}: {} live", "", s.name, s.id, s.live)?;
            if s.cancelled {
                f.write_str(", cancelled")?;
            }
            writeln!(f)?;
        }
        for q in &self.stats.quotas {
            writeln!(f, "quota {q}")?;
        }
        for c in &self.children {
            write!(f, "child pid {} (group {}): {}", c.pid, c.pgid, c.cmdline)?;
            match c.resource {
                Some(id) => writeln!(f, "  [resource {id}]")?,
                // Unless its entry was past the listed ones.
                None if self.live_total == self.live.len() => writeln!(f, "  [not managed]")?,
                None => writeln!(f)?,
            }
        }
        for p in &self.pending_cleanups {
            writeln!(f, "clean-up retrying: {p}")?;
        }
        write!(
            f,
            "{} live, {} clean-up(s) running, {} scope(s) or task(s) running",
            self.live_total, self.cleanups_in_flight, self.scopes_running
        )
    }
}
