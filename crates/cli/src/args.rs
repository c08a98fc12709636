//! Command-line arguments. Parsing only: turning them into library options happens in the
//! command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lifeboat_core::ops::check::DataSubset;
use lifeboat_core::snapshot::retention::{Count, GroupBy, Span};

#[derive(Parser, Debug)]
#[command(
    name = "lifeboat",
    version,
    about = "Encrypted, deduplicated backups you can prove you can restore",
    after_help = "Start with `lifeboat backup DIR`: with no --repo it creates a repository under your data\ndirectory and a key file under your config directory, and says where they are."
)]
pub struct Cli {
    /// Repository location: a directory, s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3://BUCKET[/PREFIX],
    /// azure:CONTAINER[/PREFIX], gs:BUCKET[/PREFIX] or rest:http(s)://HOST:PORT (serve-repo).
    /// Default: an embedded repository under your data directory
    #[arg(
        short = 'r',
        long,
        env = "LIFEBOAT_REPOSITORY",
        global = true,
        help_heading = "Global options"
    )]
    pub repo: Option<PathBuf>,

    /// Read the repository password from this file
    #[arg(
        long,
        env = "LIFEBOAT_PASSWORD_FILE",
        global = true,
        help_heading = "Global options"
    )]
    pub password_file: Option<PathBuf>,

    /// Open the repository with a generated key file instead of a password; `init` creates
    /// the file (0600) when it does not exist. Keep a copy of it away from this machine
    #[arg(
        long,
        env = "LIFEBOAT_KEY_FILE",
        global = true,
        help_heading = "Global options",
        conflicts_with = "password_file"
    )]
    pub key_file: Option<PathBuf>,

    /// Print JSON (JSON lines for streams of results and progress)
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Print only errors
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Print more: every file processed
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub verbose: bool,

    /// Read without taking a lock (readers do so by themselves where they cannot write a
    /// lock); a prune that runs meanwhile may delete data this command reads
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_lock: bool,

    /// The configuration file, which names sources for `backup --source NAME`
    /// (default: lifeboat/lifeboat.toml under your config directory, if it exists)
    #[arg(
        long,
        env = "LIFEBOAT_CONFIG",
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,

    /// Where to cache index files, snapshots and trees of repositories in object stores
    /// (default: lifeboat/ under your cache directory; safe to delete)
    #[arg(
        long,
        env = "LIFEBOAT_CACHE_DIR",
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub cache_dir: Option<PathBuf>,

    /// Read everything from the repository itself, not from the local cache
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_cache: bool,

    /// Requests to an object store in flight at once (default 8)
    #[arg(
        long,
        env = "LIFEBOAT_CONNECTIONS",
        global = true,
        help_heading = "Global options"
    )]
    pub connections: Option<usize>,

    /// Storage class for data packs in an object store (e.g. STANDARD_IA); index, snapshots
    /// and keys keep the bucket's default so they stay readable at once
    #[arg(
        long = "pack-storage-class",
        env = "LIFEBOAT_PACK_STORAGE_CLASS",
        global = true,
        help_heading = "Global options"
    )]
    pub pack_storage_class: Option<String>,

    /// S3 Object Lock: write every object but locks with this many days of retention (the
    /// bucket must have Object Lock enabled). For the --to repository of copy:
    /// LIFEBOAT_TO_RETENTION_DAYS
    #[arg(
        long = "retention-days",
        value_name = "DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36500),
        env = "LIFEBOAT_RETENTION_DAYS",
        global = true,
        help_heading = "Global options"
    )]
    pub retention_days: Option<u32>,

    /// governance (users with the bypass permission may still delete) or compliance (nobody
    /// may, until the date)
    #[arg(
        long = "retention-mode",
        value_name = "MODE",
        env = "LIFEBOAT_RETENTION_MODE",
        default_value = "governance",
        global = true,
        help_heading = "Global options"
    )]
    pub retention_mode: lifeboat_backends::RetentionMode,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository
    #[command(after_help = "Example:\n  lifeboat --repo /srv/backup init")]
    Init(InitArgs),
    /// Back up files and directories (or stdin)
    #[command(
        after_help = "Examples:\n  lifeboat backup ~/work --tag daily --exclude '*.tmp'\n  pg_dumpall | lifeboat backup --stdin --stdin-filename all.sql"
    )]
    Backup(BackupArgs),
    /// List snapshots
    #[command(after_help = "Example:\n  lifeboat snapshots --host web1 --tag daily")]
    Snapshots(SnapshotsArgs),
    /// List files in a snapshot
    #[command(after_help = "Example:\n  lifeboat ls latest /home/me/work --long")]
    Ls(LsArgs),
    /// Find files matching a pattern in every snapshot, newest first
    #[command(
        after_help = "Examples:\n  lifeboat find 'invoice-*.pdf'\n  lifeboat find '/srv/app/**/config.toml' --snapshot latest"
    )]
    Find(FindArgs),
    /// Restore a snapshot, or a path inside one, into a directory
    #[command(
        after_help = "Examples:\n  lifeboat restore latest --target /tmp/restore\n  lifeboat restore 1a2b3c4d:/home/me/work --target /tmp/work --include '*.rs'\n  lifeboat restore @2026-01-31 --target /tmp/jan"
    )]
    Restore(RestoreArgs),
    /// Write a file to stdout, or a directory as a tar archive
    #[command(
        after_help = "Examples:\n  lifeboat dump latest /etc/hosts\n  lifeboat dump latest /etc > etc.tar"
    )]
    Dump(DumpArgs),
    /// Show what changed between two snapshots
    #[command(after_help = "Example:\n  lifeboat diff 1a2b3c4d latest")]
    Diff(DiffArgs),
    /// Remove snapshots by a retention policy, or by id (the data stays until prune)
    #[command(
        after_help = "Examples:\n  lifeboat forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run\n  lifeboat forget --keep-within 30d --host web1\n  lifeboat forget 1a2b3c4d"
    )]
    Forget(ForgetArgs),
    /// Delete the data no snapshot uses any more; backups may keep running meanwhile
    #[command(
        after_help = "Examples:\n  lifeboat prune --dry-run\n  lifeboat prune --max-unused 10%\n  lifeboat forget --keep-daily 7 --keep-weekly 5 --prune"
    )]
    Prune(PruneArgs),
    /// Copy snapshots into another repository; those it already holds are skipped
    #[command(
        after_help = "Examples:\n  lifeboat copy --to /mnt/offsite --to-password-file ~/.offsite-pw\n  lifeboat copy latest --to /mnt/offsite --host web1\n  lifeboat --repo /mnt/offsite init --copy-chunker-params --from-repo /srv/backup   # copies then move blobs without reading them"
    )]
    Copy(CopyArgs),
    /// Verify the repository's structure, and with --read-data its data
    #[command(
        after_help = "Examples:\n  lifeboat check\n  lifeboat check --read-data\n  lifeboat check --read-data-subset 3/30    # a thirtieth of the packs, the third"
    )]
    Check(CheckArgs),
    /// Sizes, deduplication and compression of snapshots
    #[command(
        after_help = "Examples:\n  lifeboat stats\n  lifeboat stats latest --mode raw-data\n  lifeboat stats --host web1 --json"
    )]
    Stats(StatsArgs),
    /// Remove stale locks (of processes that are gone), or every lock
    #[command(
        after_help = "Examples:\n  lifeboat unlock\n  lifeboat unlock --remove-all    # only when no other lifeboat uses the repository"
    )]
    Unlock(UnlockArgs),
    /// Manage the passwords (keys) that open the repository
    #[command(subcommand)]
    Key(KeyCommand),
    /// Repair a damaged repository: rebuild the index, or rewrite damaged snapshots
    #[command(
        subcommand,
        after_help = "Examples:\n  lifeboat repair index\n  lifeboat repair snapshots --dry-run\n\n`lifeboat check` says what is damaged; run it before and after a repair."
    )]
    Repair(RepairCommand),
    /// Watch the copies of this repository made with `copy --to`
    #[command(
        subcommand,
        after_help = "Examples:\n  lifeboat replicate status --to s3:https://s3.eu-west-3.example.com/backups/web1\n  lifeboat replicate status --to /mnt/offsite --json"
    )]
    Replicate(ReplicateCommand),
    /// Serve a repository directory over HTTP(S) to `rest:` clients, optionally append-only
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  lifeboat serve-repo add-user web1 --users /srv/backup.users\n  lifeboat serve-repo add-user ops --role admin --users /srv/backup.users\n  lifeboat serve-repo --append-only --users /srv/backup.users --listen 127.0.0.1:8000 /srv/backup\n\nClients: --repo rest:http://127.0.0.1:8000 with LIFEBOAT_REST_USER and LIFEBOAT_REST_PASSWORD."
    )]
    ServeRepo(ServeRepoArgs),
    /// Back up a SQLite database consistently while it is written, and restore it atomically
    #[command(
        subcommand,
        after_help = "Examples:\n  lifeboat sqlite backup /srv/app/app.db\n  lifeboat sqlite restore latest --to /srv/app/app.db.restored\n  lifeboat sqlite restore @2026-01-31 --name app.db --to /tmp/app.db"
    )]
    Sqlite(SqliteCommand),
    /// PostgreSQL: base backups and WAL archiving for point-in-time recovery, and logical dumps
    #[command(
        subcommand,
        after_help = "Examples:\n  archive_command = 'lifeboat pg wal-push %p'   (postgresql.conf, with archive_mode = on)\n  lifeboat pg backup\n  lifeboat pg restore --pgdata /srv/pg/restored --target-time '2026-12-01 10:00:00+01'\n  lifeboat pg status\n  lifeboat pg backup --logical --database shop\n\nConnection settings come from PG* variables and ~/.pgpass (docs/recovery.md)."
    )]
    Pg(PgCommand),
    /// MariaDB and MySQL: a logical backup in one transaction
    #[command(
        subcommand,
        after_help = "Examples:\n  lifeboat mysql backup --defaults-extra-file /etc/lifeboat/backup.cnf\n  lifeboat mysql backup --database shop\n\nPasswords go in an option file ([client] password=...), never on a command line; restore with\n  lifeboat dump latest /mysql.sql | mariadb (docs/recovery.md)"
    )]
    Mysql(MysqlCommand),
}

#[derive(Subcommand, Debug)]
pub enum MysqlCommand {
    /// Dump with mariadb-dump (or mysqldump) --single-transaction into a snapshot, streamed
    Backup(MysqlBackupArgs),
    /// Stream a stored dump into the mariadb (or mysql) client of an empty server
    Restore(MysqlRestoreArgs),
}

#[derive(Args, Debug)]
pub struct MysqlRestoreArgs {
    /// The snapshot (id, prefix, `latest` or `@TIME`) of a `mysql backup`
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// An option file with the connection settings and password, read by the client
    #[arg(long, value_name = "FILE")]
    pub defaults_extra_file: Option<PathBuf>,
    /// Directory of mariadb or mysql (default: found on PATH)
    #[arg(long, value_name = "DIR")]
    pub mysql_bin: Option<PathBuf>,
    /// Restore even if the server already holds databases of its own (the dump then
    /// replaces the tables it names in them)
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct MysqlBackupArgs {
    /// A database to dump (repeatable; default: all of them)
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
    /// An option file with the connection settings and password, read by the dump tool
    #[arg(long, value_name = "FILE")]
    pub defaults_extra_file: Option<PathBuf>,
    /// Directory of mariadb-dump or mysqldump (default: found on PATH)
    #[arg(long, value_name = "DIR")]
    pub mysql_bin: Option<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PgCommand {
    /// A base backup with pg_basebackup (for point-in-time recovery with archived WAL), or
    /// with --logical, pg_dump of databases and pg_dumpall --globals-only
    Backup(PgBackupArgs),
    /// archive_command: put a WAL file durably into the local spool; a background pusher
    /// stores it in the repository
    WalPush(PgWalPushArgs),
    /// restore_command: write an archived WAL file to the path PostgreSQL gives
    WalFetch(PgWalFetchArgs),
    /// Restore a base backup into a new data directory, set to replay WAL to a target
    Restore(PgRestoreArgs),
    /// The WAL archive: last archived segment, what is still only in the spool, base
    /// backups and the window they can restore
    Status(PgStatusArgs),
    /// Forget the archived WAL no base backup needs (before the oldest one's start); base
    /// backups themselves go with `forget`, space with `prune`
    Expire(PgExpireArgs),
}

#[derive(Args, Debug)]
pub struct PgExpireArgs {
    /// Say what would be forgotten, forget nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct PgBackupArgs {
    /// A logical backup (pg_dump per database) instead of a base backup
    #[arg(long)]
    pub logical: bool,
    /// A database to dump (repeatable; default: every database that accepts connections);
    /// with --logical only
    #[arg(long = "database", value_name = "NAME", requires = "logical")]
    pub databases: Vec<String>,
    /// Let the server spread the starting checkpoint over checkpoint_completion_target
    /// (gentler on a busy server; the backup starts minutes later) instead of a fast one
    #[arg(long, conflicts_with = "logical")]
    pub spread_checkpoint: bool,
    /// Where the WAL the base backup needs comes from: fetch (in the backup itself, which
    /// then restores without the archive) or none (from the archive; the server waits for
    /// it at the backup's end)
    #[arg(
        long,
        value_name = "METHOD",
        default_value = "fetch",
        conflicts_with = "logical"
    )]
    pub wal_method: String,
    /// Directory of pg_basebackup, pg_dump, pg_dumpall and psql (default: found on PATH)
    #[arg(long, value_name = "DIR", env = "LIFEBOAT_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Args, Debug)]
pub struct PgSpoolArgs {
    /// The WAL spool directory (default: lifeboat/pg-spool/SYSTEM-ID under the cache
    /// directory of the server's user)
    #[arg(long, value_name = "DIR", env = "LIFEBOAT_PG_SPOOL")]
    pub spool: Option<PathBuf>,
    /// The cluster's data directory (default: the current directory, which is the data
    /// directory when the server runs archive_command)
    #[arg(long, value_name = "DIR", env = "PGDATA")]
    pub pgdata: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PgWalPushArgs {
    /// The WAL file (archive_command's %p)
    #[arg(required_unless_present = "drain")]
    pub path: Option<PathBuf>,
    /// Also store what is in the spool in the repository, in the foreground, and return
    /// when it is stored (what the background pusher does)
    #[arg(long)]
    pub drain: bool,
    #[command(flatten)]
    pub spool: PgSpoolArgs,
}

#[derive(Args, Debug)]
pub struct PgWalFetchArgs {
    /// The WAL file's name (restore_command's %f)
    pub name: String,
    /// Where to write it (restore_command's %p)
    pub destination: PathBuf,
    /// Take files from this directory (relative to the data directory) instead of the
    /// repository: `pg restore` fetches the WAL there before the server starts
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The cluster's data directory (default: the current directory)
    #[arg(long, value_name = "DIR", env = "PGDATA")]
    pub pgdata: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").args(["latest", "target_time", "target_lsn", "target_xid"])))]
pub struct PgRestoreArgs {
    /// The data directory to create (new or empty)
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "logical",
        conflicts_with = "logical"
    )]
    pub pgdata: Option<PathBuf>,
    /// Restore a logical dump (`pg backup --logical`) with pg_restore into a new database,
    /// instead of a base backup
    #[arg(long, requires = "database", conflicts_with = "target")]
    pub logical: bool,
    /// With --logical: the snapshot (id, prefix, `latest` or `@TIME`)
    #[arg(
        long,
        value_name = "SNAPSHOT",
        default_value = "latest",
        requires = "logical"
    )]
    pub snapshot: String,
    /// With --logical: the dumped database to restore
    #[arg(long, value_name = "NAME", requires = "logical")]
    pub database: Option<String>,
    /// With --logical: the database to create for it (default: the same name); it must not
    /// exist yet
    #[arg(long, value_name = "NAME", requires = "logical")]
    pub into: Option<String>,
    /// Directory of pg_restore and createdb (default: found on PATH)
    #[arg(long, value_name = "DIR", env = "LIFEBOAT_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Replay every archived change
    #[arg(long)]
    pub latest: bool,
    /// Stop replay at this time (RFC 3339, or YYYY-MM-DD HH:MM:SS in local time)
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Stop replay at this WAL position (like 0/16B3748)
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Stop replay after this transaction commits
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<u64>,
    /// What the server does at the target: promote (open for writes), pause (read-only, to
    /// inspect before promoting) or shutdown
    #[arg(long, value_name = "ACTION", default_value = "promote")]
    pub target_action: String,
    /// The timeline to recover along: latest (PostgreSQL's default), current (the base
    /// backup's) or a number
    #[arg(long, value_name = "TIMELINE")]
    pub target_timeline: Option<String>,
    /// Turn archiving off in the restored server (for a drill or a copy: its changes must
    /// not enter the archive). By default it archives as the backed-up server did, so the
    /// new timeline is archived and a later recovery can follow it
    #[arg(long)]
    pub no_archive: bool,
    /// Only base backups of this host (repeatable)
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PgStatusArgs {
    #[command(flatten)]
    pub spool: PgSpoolArgs,
    /// Only what this host knows (the spool and the server), without opening the
    /// repository: cheap enough to poll every few seconds
    #[arg(long)]
    pub local: bool,
    /// Directory of psql, which asks the server (PG* variables) which segment it writes,
    /// for the archive lag (default: found on PATH)
    #[arg(long, value_name = "DIR", env = "LIFEBOAT_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum SqliteCommand {
    /// Copy a database with SQLite's online backup API (writers go on) and store the copy
    Backup(SqliteBackupArgs),
    /// Put a stored database into a new file: written beside it, checked, renamed into place
    Restore(SqliteRestoreArgs),
}

#[derive(Args, Debug)]
pub struct SqliteBackupArgs {
    /// The database file
    pub database: PathBuf,
    /// The file name to store the copy as (default: the database's own file name)
    #[arg(long)]
    pub name: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Directory for the temporary copy, which needs the database's size (default: $TMPDIR)
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SqliteRestoreArgs {
    /// The snapshot (id, prefix, `latest` or `@TIME`) of a `sqlite backup`
    pub snapshot: String,
    /// The stored database's name (default: the snapshot's only one)
    #[arg(long)]
    pub name: Option<String>,
    /// The file to create
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Replace --to if it exists (never while a journal or WAL file is beside it)
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct ServeRepoArgs {
    #[command(subcommand)]
    pub command: Option<ServeRepoCommand>,
    /// The repository directory to serve (`init` through the server creates it)
    pub dir: Option<PathBuf>,
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Users and their roles (made with `serve-repo add-user`)
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// Backup users may add objects but delete none (except their locks); admins may
    #[arg(long)]
    pub append_only: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ServeRepoCommand {
    /// Add a user with a generated password, which is printed once
    AddUser(AddUserArgs),
}

#[derive(Args, Debug)]
pub struct AddUserArgs {
    /// The user name (letters, digits, '.', '_', '-')
    pub name: String,
    /// backup: read and add; admin: also delete (forget, prune) on an append-only server
    #[arg(long, default_value = "backup", value_parser = ["backup", "admin"])]
    pub role: String,
    /// The users file (created 0600 if missing)
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum ReplicateCommand {
    /// Newest snapshot of every backup source here and in the copy, and how far the copy lags
    /// behind
    Status(ReplicateStatusArgs),
}

#[derive(Args, Debug)]
pub struct ReplicateStatusArgs {
    #[command(flatten)]
    pub to: ToRepositoryArgs,
}

/// The second repository of `copy` and `replicate`.
#[derive(Args, Debug)]
pub struct ToRepositoryArgs {
    /// The copy: a directory or an object-store URL, like --repo
    #[arg(long, value_name = "REPO", env = "LIFEBOAT_TO_REPOSITORY")]
    pub to: PathBuf,
    /// Password file of the --to repository (or LIFEBOAT_TO_PASSWORD)
    #[arg(long, env = "LIFEBOAT_TO_PASSWORD_FILE", value_name = "FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Key file of the --to repository
    #[arg(long, env = "LIFEBOAT_TO_KEY_FILE", value_name = "FILE")]
    pub to_key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Build a new index from the packs' headers
    #[command(
        long_about = "Build a new index from the packs' headers.\n\nEvery pack in the repository is \
read (its header only) and listed in new index files, which then replace the old ones. This \
finds packs that no index lists (from an interrupted backup) and drops index entries of packs \
that are gone. A pack whose header is damaged is reported and left out of the index; it is not \
deleted.",
        after_help = "Examples:\n  lifeboat repair index --dry-run\n  lifeboat repair index"
    )]
    Index(RepairIndexArgs),
    /// Rewrite snapshots without the files whose data is lost
    #[command(
        long_about = "Rewrite snapshots without the files whose data is lost.\n\nA file with a \
blob that is not in the index, or whose pack is missing, is left out; a directory whose listing \
cannot be read is kept empty. Each snapshot that lost something is saved again as a new \
snapshot (same time, host, paths and tags) and every path left out is listed; intact snapshots \
are not touched. The originals are kept unless --forget is given.\n\nRun `lifeboat repair \
index` first if packs are missing or damaged, and `lifeboat check` afterwards.",
        after_help = "Examples:\n  lifeboat repair snapshots --dry-run\n  lifeboat repair snapshots --forget\n  lifeboat repair snapshots latest --host web1"
    )]
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args, Debug)]
pub struct RepairIndexArgs {
    /// Show what would change, change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Also read every blob and leave out of the index those that are damaged (then
    /// `repair snapshots` drops the files that used them)
    #[arg(long)]
    pub read_data: bool,
}

#[derive(Args, Debug)]
pub struct RepairSnapshotsArgs {
    /// Snapshots to repair (id, unique prefix, latest, @TIME); default: all that match the filters
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Remove each original once its repaired snapshot is saved
    #[arg(long)]
    pub forget: bool,
    /// Show what would be left out, change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// Remove every lock, live ones too
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsMode {
    /// Files and what restoring them would write
    RestoreSize,
    /// The distinct blobs they use: plaintext and stored size, packs
    RawData,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Snapshots (id, unique prefix, latest, @TIME); default: all that match the filters
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Show only these figures (default: both)
    #[arg(long, value_enum)]
    pub mode: Option<StatsMode>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read every blob: authenticate, decompress and compare it with its id
    #[arg(long)]
    pub read_data: bool,
    /// Read only some packs: a percentage (5%, chosen at random each run) or a part K/M (the
    /// same packs each time; parts 1 to M together read everything)
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
    pub read_data_subset: Option<DataSubset>,
}

#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for the new key (default 65536; lower only for tests)
    #[arg(long, hide_short_help = true)]
    pub kdf_memory_kib: Option<u32>,
    /// Argon2id iterations for the new key (default 12)
    #[arg(long, hide_short_help = true)]
    pub kdf_iterations: Option<u32>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Default compression for this repository: off, auto, fast, max or a zstd level
    #[arg(long, default_value = "auto")]
    pub compression: String,
    /// Repository format version: 2 (default) groups small files into shared compressed
    /// frames; 1 is readable by lifeboat 0.1
    #[arg(long, default_value_t = lifeboat_core::repository::FORMAT_VERSION,
          value_parser = clap::value_parser!(u32).range(1..=2))]
    pub format_version: u32,
    /// Chunk and name blobs as the repository of --from-repo does, so that `copy` between the
    /// two moves blobs without reading them (its password stays its own)
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    /// The repository whose chunker to copy
    #[arg(long, value_name = "REPO", requires = "copy_chunker_params")]
    pub from_repo: Option<PathBuf>,
    /// Password file of --from-repo (or LIFEBOAT_FROM_PASSWORD)
    #[arg(long, env = "LIFEBOAT_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Key file of --from-repo
    #[arg(long, env = "LIFEBOAT_FROM_KEY_FILE", value_name = "FILE")]
    pub from_key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Snapshots to copy (id, unique prefix, latest, @TIME); default: all that match the filters
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// The repository to copy into
    #[command(flatten)]
    pub to: ToRepositoryArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// Files and directories to back up
    pub paths: Vec<PathBuf>,
    /// Back up a source named in the configuration file (repeatable: each in turn)
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Exclude paths matching a glob; without a `/` it matches file names (repeatable)
    #[arg(short = 'e', long = "exclude")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line (`#` starts a comment)
    #[arg(long = "exclude-file")]
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross filesystem boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Record this time instead of now (RFC 3339)
    #[arg(long)]
    pub time: Option<String>,
    /// Back up what is read from stdin as one file
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Back up the standard output of the command given after `--` as one file named NAME;
    /// a command that exits non-zero or is killed leaves no snapshot
    #[arg(long, value_name = "NAME")]
    pub command: Option<String>,
    /// The command for --command and its arguments
    #[arg(last = true, value_name = "CMD")]
    pub command_line: Vec<std::ffi::OsString>,
    /// Do everything except writing to the repository
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Read every file, even those unchanged since the parent snapshot
    #[arg(short, long)]
    pub force: bool,
    /// Compression for this backup: off, auto, fast, max or a zstd level
    #[arg(long)]
    pub compression: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable; all must match)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots of this path (repeatable; all must match)
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to forget (id or unique prefix), instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the N latest hours that have one (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the N latest days that have one (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the N latest ISO weeks that have one (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the N latest months that have one (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the N latest years that have one (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<Count>,
    /// Keep every snapshot within this span of the group's newest one (1y6m, 2w, 36h)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<Span>,
    /// Keep every snapshot with this tag (repeatable; `a,b`: with both tags)
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Apply the policy to each group of snapshots sharing these (host, paths, tags; "" for one group)
    #[arg(long, value_name = "FIELDS", default_value = "host,paths")]
    pub group_by: GroupBy,
    /// Count hours, days, weeks, months and years in this time zone: local, UTC, an offset
    /// (+02:00) or a name (Europe/Berlin)
    #[arg(long, value_name = "ZONE", default_value = "local")]
    pub tz: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be removed, remove nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_options: PruneOptionArgs,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted and repacked, change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub options: PruneOptionArgs,
}

#[derive(Args, Debug)]
pub struct PruneOptionArgs {
    /// Tolerate this share of unused data in a pack before copying its used blobs into a new
    /// pack: a percentage (5%), or `unlimited` (only delete packs that are wholly unused)
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = parse_max_unused)]
    pub max_unused: f64,
}

/// `N%` (0 to 100) or `unlimited`, as a fraction.
fn parse_max_unused(s: &str) -> Result<f64, String> {
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(f64::INFINITY);
    }
    let number = s
        .strip_suffix('%')
        .ok_or_else(|| format!("{s:?}: give a percentage such as 5% or the word unlimited"))?;
    match number.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("{s:?}: the percentage must be between 0% and 100%")),
    }
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// List every WAL archive snapshot too (by default they are counted in one line; --json
    /// always lists them)
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot: id, unique id prefix, latest, or @TIME
    pub snapshot: String,
    /// Path inside the snapshot (default: everything)
    pub path: Option<String>,
    /// Show mode, owner, size and modification time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Glob; without a `/` it matches file names, with one the whole path
    pub pattern: String,
    /// Search only these snapshots (repeatable)
    #[arg(short, long = "snapshot")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// SNAPSHOT[:SUBPATH]; SNAPSHOT is an id, unique id prefix, latest, or @TIME
    pub snapshot: String,
    /// Directory to restore into (created if missing)
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching this glob (repeatable)
    #[arg(short, long = "include")]
    pub includes: Vec<String>,
    /// Skip paths matching this glob (repeatable)
    #[arg(short, long = "exclude")]
    pub excludes: Vec<String>,
    /// What to do with files that exist in the target: always, if-changed, never
    #[arg(long, default_value = "always")]
    pub overwrite: String,
    /// Read restored files back and check them against the snapshot
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    pub snapshot: String,
    /// Path of a file (written as is) or directory (written as tar)
    pub path: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub first: String,
    pub second: String,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List keys
    List,
    /// Add a password
    Add(NewPasswordArgs),
    /// Remove a key (not the one in use)
    Remove { id: String },
    /// Change the password in use
    Passwd(NewPasswordArgs),
}

#[derive(Args, Debug)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (else LIFEBOAT_NEW_PASSWORD, else a prompt)
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}
