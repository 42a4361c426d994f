"""The one place for the pipeline's defaults.

Every default a job, a stage or the cluster uses lives here, so that a change of policy
(a seed, a threshold target, a port) is one edit. Environment variables named
``XRAY_<NAME>`` override the few settings that differ between machines.
"""
from __future__ import annotations

import getpass
import os
import re
import shutil
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"XRAY_{name}", default)


REPO_ROOT = Path(__file__).resolve().parent.parent

# --- dataset layout -------------------------------------------------------------------------
SPLITS = ("train", "val", "test")
#: class folder -> label. PNEUMONIA is the positive class (the report's Spark section had it
#: backwards: NORMAL=1).
CLASSES = {"NORMAL": 0, "PNEUMONIA": 1}
CLASS_NAMES = {label: name for name, label in CLASSES.items()}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
#: The Pillow formats those extensions stand for; anything else is rejected at ingest.
IMAGE_FORMATS = ("JPEG", "PNG")
#: Images above this many pixels are rejected before decoding (a 12000x12000 scan would need
#: about 430 MB as RGB). Pillow's own decompression-bomb error fires at about 179 Mpx.
MAX_IMAGE_PIXELS = int(_env("MAX_IMAGE_PIXELS", str(64_000_000)))

# --- reproducibility ------------------------------------------------------------------------
SEED = 42
#: Fraction of the train split's patients held out for model selection and the threshold.
VALIDATION_FRACTION = 0.2

# --- featurizer -----------------------------------------------------------------------------
DEFAULT_MODEL = "InceptionV3"
DEFAULT_POOLING = "avg"
#: Images per model call. Also the Arrow batch size, so one Arrow batch is one model call.
DEFAULT_BATCH_SIZE = 32
#: Default reader: "binaryFile" ships compressed bytes to Python (see README: Readers).
DEFAULT_READER = "binaryFile"
#: Decode a JPEG at least twice the model's input size straight to near that size (libjpeg's
#: DCT scaling, Pillow's draft mode) rather than in full and then resized: on the real
#: dataset's 1.4 Mpx originals 2.2x faster to decode, InceptionV3 features within cosine
#: 0.99999 of a full decode (bench/decode.py). The pixels then differ slightly from Keras'
#: load_img; False decodes exactly as it does (README, Full-resolution films).
DRAFT_DECODE = True
#: Compute precision of the featurizer and fine-tuning (pipeline.runtime.precision): "auto"
#: takes bfloat16 where the hardware runs it fast, float32 elsewhere.
PRECISION = "auto"
READERS = ("binaryFile", "image")

# --- classifier (the reference report's values as the starting point) -----------------------
LR_MAX_ITER = 10
LR_REG_PARAM = 0.05
LR_ELASTIC_NET = 0.3
#: The decision threshold is the highest one that still reaches this sensitivity on the
#: validation split: missing pneumonia costs more than a second look at a normal film.
TARGET_SENSITIVITY = 0.95
#: Sensitivity targets every report also shows, each with its own validation threshold, so
#: a site can pick its operating point without retraining (jobs/evaluate.py
#: --target-sensitivity).
OPERATING_TARGETS = (0.90, 0.95, 0.98)

# --- uncertainty and cross-validation (pipeline/report) -------------------------------------
#: Resamples of the patient-clustered bootstrap behind every report's intervals.
BOOTSTRAP_RESAMPLES = 1000

# --- outputs (pipeline/fs/lease.py) ---------------------------------------------------------
#: One writer per output: a job holds a lease beside each output it writes, refreshed every
#: quarter of this; a lease unrefreshed this long is a killed job's and is taken over (after
#: watching it for half as long again, so a slow clock cannot steal a live one).
LEASE_TIMEOUT_S = float(_env("LEASE_TIMEOUT_S", "60"))

# --- cluster (pipeline/cluster, docs/cluster.md) --------------------------------------------
#: Hadoop's servers, fetched from Maven Central (pipeline/cluster/hadoop-jars.pom.xml). 3.5 is
#: the first line whose servers run on Java 17; changing it means regenerating the jar lock.
HADOOP_VERSION = _env("HADOOP_VERSION", "3.5.0")
#: Hadoop 3.5 needs Java 17 (older Hadoop breaks on Java 23+); the JVM image tag follows it.
JAVA_MAJOR = 17


def find_java_home(environ=os.environ, jvm_dir: Path = Path("/usr/lib/jvm"),
                   path: str | None = None) -> tuple[Path, str]:
    """(home, where it came from) of the Java the cluster runs on. XRAY_JAVA_HOME, else the
    standard JAVA_HOME, else a Java 17 found on the machine: an OpenJDK or Temurin 17 under
    jvm_dir, or the ``java`` on PATH when its home's ``release`` file says 17 (read, not run:
    every process imports this), else Debian's amd64 path. check_java names the origin."""
    for name in ("XRAY_JAVA_HOME", "JAVA_HOME"):
        if environ.get(name):
            return Path(environ[name]), name
    for pattern in (f"java-{JAVA_MAJOR}-openjdk*", f"temurin-{JAVA_MAJOR}-*"):
        for home in sorted(jvm_dir.glob(pattern)):
            if (home / "bin" / "java").is_file():
                return home, f"found under {jvm_dir}"
    java = shutil.which("java", path=environ.get("PATH") if path is None else path)
    if java:
        home = Path(java).resolve().parent.parent
        release = home / "release"
        try:
            version = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.M)
        except OSError:
            version = None
        if version and int(version[1]) == JAVA_MAJOR:
            return home, "the java on PATH"
    return jvm_dir / f"java-{JAVA_MAJOR}-openjdk-amd64", "the default"


#: JAVA_HOME_FROM: "XRAY_JAVA_HOME", "JAVA_HOME", or how it was found, for error messages.
JAVA_HOME, JAVA_HOME_FROM = find_java_home()
#: Which cluster `make cluster-up` starts: "native" (the default: Java processes on loopback),
#: "docker" (Docker Compose, docker/compose.yaml) or "auto" (docker when an engine and the
#: compose plugin answer, else native). XRAY_CLUSTER, or the older XRAY_CLUSTER_MODE. `down`,
#: `status` and `env` follow the mode `up` recorded, never this setting.
CLUSTER_MODE = os.environ.get("XRAY_CLUSTER") or _env("CLUSTER_MODE", "native")
#: Docker mode: the compose project, and the subnet of its network. Containers get fixed
#: addresses in it, which the host reaches directly (pipeline/cluster/docker.py says why).
#: "auto": `up` takes a /24 nothing on the host uses (172.29.77.0/24 when free).
COMPOSE_PROJECT = _env("COMPOSE_PROJECT", "xray-cluster")
DOCKER_SUBNET = _env("DOCKER_SUBNET", "auto")
#: Daemon data, logs, pid files and the rendered configuration of the native cluster.
STATE_DIR = Path(_env("STATE_DIR", str(
    Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "xray-pipeline")))
#: Downloaded jars and the Spark jar archive: large, re-creatable, never in the repo.
CACHE_DIR = Path(_env("CACHE_DIR", str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xray-pipeline")))
#: Every daemon binds and advertises loopback only.
CLUSTER_HOST = "localhost"
CLUSTER_BIND_HOST = "127.0.0.1"
#: name -> port; XRAY_PORT_<NAME> overrides one (e.g. XRAY_PORT_NAMENODE_HTTP=19870).
CLUSTER_PORTS = {name: int(_env(f"PORT_{name.upper()}", str(port))) for name, port in {
    "namenode_rpc": 9000, "namenode_http": 9870,
    "datanode": 9866, "datanode_http": 9864, "datanode_ipc": 9867,
    "resourcemanager": 8032, "resourcemanager_scheduler": 8030,
    "resourcemanager_tracker": 8031, "resourcemanager_admin": 8033,
    "resourcemanager_http": 8088,
    "nodemanager": 8041, "nodemanager_localizer": 8040, "nodemanager_http": 8042,
    "history_http": 18080,
    # The KDC of a SECURE=1 cluster (pipeline/cluster/kdc.py), over TCP.
    "kdc": 10088,
}.items()}
#: The Kerberos realm of a SECURE=1 cluster's KDC; its principals are <service>/CLUSTER_HOST
#: and <OS user> in it.
KERBEROS_REALM = "XRAY.LOCAL"
#: JVM heap per daemon in MB (XRAY_HEAP_<DAEMON>); small: the NodeManager's containers, not
#: the daemons, should get the memory of a 24 GiB machine.
DAEMON_HEAP_MB = {name: int(_env(f"HEAP_{name.upper()}", str(mb))) for name, mb in {
    "namenode": 1024, "datanode": 512, "resourcemanager": 1024, "nodemanager": 512,
    "history": 1024,
}.items()}
#: JVM options for every daemon (XRAY_DAEMON_JVM_OPTS, space-separated). The C1 compiler alone
#: and the serial collector spend less CPU warming up: on 2 busy cores a warm start took 10-21 s
#: instead of 20-37 s, and WebHDFS uploads ran as fast or faster. The daemons are light.
DAEMON_JVM_OPTS = _env("DAEMON_JVM_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC").split()
#: What the NodeManager offers to containers: two executors (1 GB heap + 2 GB for the Python
#: workers each) and the application master fit, on a 2-core machine with 4 vcores.
NODEMANAGER_MEMORY_MB = int(_env("NODEMANAGER_MEMORY_MB", "8192"))
NODEMANAGER_VCORES = int(_env("NODEMANAGER_VCORES", "4"))
#: How long `cluster up` waits for every daemon to report healthy.
CLUSTER_START_TIMEOUT_S = float(_env("CLUSTER_START_TIMEOUT_S", "180"))

# --- HDFS ingest ----------------------------------------------------------------------------
#: WebHDFS endpoint of the NameNode, used for ``hdfs:///path`` destinations (no host): by
#: default the cluster's own NameNode HTTP port, so XRAY_PORT_NAMENODE_HTTP moves both.
WEBHDFS_URL = _env("WEBHDFS_URL", f"http://{CLUSTER_HOST}:{CLUSTER_PORTS['namenode_http']}")
#: The user WebHDFS acts as (security off: it is just a name). Hadoop's own variable is honoured.
HDFS_USER = _env("HDFS_USER", os.environ.get("HADOOP_USER_NAME", "") or getpass.getuser())
#: Parallel uploads. Small files make WebHDFS latency-bound (three round trips a file, and
#: a DataNode that waits for the NameNode when closing each one), so far more threads than
#: cores pay off: on the 2-core box, 16 -> 60 s and 32 -> 52 s for the 5,232 images.
INGEST_THREADS = int(_env("INGEST_THREADS", "32"))
#: Seconds to wait for a TCP connection to the NameNode or a DataNode: an unreachable cluster
#: must fail fast with a clear line rather than hang.
HDFS_CONNECT_TIMEOUT_S = float(_env("HDFS_CONNECT_TIMEOUT_S", "10"))
#: Seconds to wait for a response once connected (a large upload on a busy DataNode).
HDFS_READ_TIMEOUT_S = float(_env("HDFS_READ_TIMEOUT_S", "120"))
#: Block size ingest asks for (HDFS's default): stated explicitly because the local copy of
#: HDFS's file checksum depends on it.
HDFS_BLOCK_SIZE = 128 * 1024 * 1024
#: Dataset directories are readable by the group (the Spark jobs), by nobody else.
HDFS_DIR_PERMISSION = "750"
HDFS_FILE_PERMISSION = "640"
#: The manifest sits next to the data; the leading underscore hides it from Hadoop input
#: formats and from Spark's file sources.
MANIFEST_NAME = "_manifest.csv"
#: What ingest's next run needs to skip files without asking HDFS (see pipeline.data.manifest).
STATE_NAME = "_ingest_state.csv"

# --- fine-tuning arm (jobs/finetune.py) -----------------------------------------------------
#: The report's two Keras methods: its from-scratch CNN and InceptionV3 transfer learning.
FINETUNE_ARCHS = ("cnn", "inceptionv3")
#: The report trained both at 150 px with batches of 32 and Adam's default rate.
FINETUNE_IMAGE_SIZE = 150
FINETUNE_BATCH_SIZE = 32
FINETUNE_EPOCHS = 10
FINETUNE_LEARNING_RATE = 1e-3
#: Unfreezing a pretrained InceptionV3 base overfits quickly (Kermany et al.); off by default,
#: and at a rate low enough not to wreck the ImageNet filters when asked for.
FINETUNE_UNFREEZE_EPOCHS = 0
FINETUNE_UNFREEZE_LEARNING_RATE = 1e-5
#: The report's ImageDataGenerator(zoom_range=0.3, vertical_flip=True).
AUGMENT_ZOOM = 0.3
#: ``--augment scanner`` (pipeline.finetune.augment): rotation up to 5 degrees, shifts and
#: zooms up to 5% and 10%; gamma and contrast factors up to 1.25x either way, brightness up
#: to 8% of the range. Small enough that a film still looks like a film from a scanner.
SCANNER_ROTATION_DEGREES = 5.0
SCANNER_SHIFT = 0.05
SCANNER_ZOOM = 0.1
SCANNER_GAMMA = 1.25
SCANNER_CONTRAST = 1.25
SCANNER_BRIGHTNESS = 0.08
#: ``--schedule``: the report's Adam with ReduceLROnPlateau, or AdamW whose rate climbs
#: linearly from a tenth over the first epoch, then follows a cosine down to a hundredth.
#: Weight decay as PyTorch's AdamW default; biases and BatchNorm's scale and shift are exempt.
SCHEDULES = ("plateau", "cosine")
WARMUP_EPOCHS = 1
ADAMW_WEIGHT_DECAY = 0.01
#: ReduceLROnPlateau(factor=0.3, patience=2) as the report, but on val_loss with mode "min"
#: (the report's mode="max" cut the rate whenever the loss *improved*).
LR_PLATEAU_FACTOR = 0.3
LR_PLATEAU_PATIENCE = 2
#: The report stopped after one epoch without a 0.1 drop in val_loss; that fires on noise.
#: Its CNN also calls every film one class for the first epochs (its log: val_accuracy 0.62
#: for four epochs), while BatchNorm's moving statistics lag the fast-moving weights, and
#: val_loss rises meanwhile; early stopping only watches from this epoch on.
EARLY_STOP_PATIENCE = 5
EARLY_STOP_START_EPOCH = 4
#: The decoded-pixel cache is read by the training task one Parquet row group at a time; this
#: many row groups are shuffled together per epoch (the task holds about that many in memory).
CACHE_ROWS_PER_GROUP = 128
CACHE_SHUFFLE_GROUPS = 4
#: Spark's GPU discovery script for executors, relative to the repository (spark-conf/).
GPU_DISCOVERY_SCRIPT = str(REPO_ROOT / "spark-conf" / "gpu-discovery.sh")

# --- screening new films (jobs/predict.py) --------------------------------------------------
#: Studies the worklist shows with thumbnails and overlays (all are in studies.csv): a 4k-film
#: run stays a page a browser opens at once.
WORKLIST_MAX_IMAGES = int(_env("WORKLIST_MAX_IMAGES", "200"))
#: ``--watch``: how often the input folder is looked at, and at most how many new films one
#: micro-batch takes (a burst is then scored in several, each written as it completes).
WATCH_TRIGGER_S = float(_env("WATCH_TRIGGER_S", "2"))
WATCH_MAX_FILES_PER_BATCH = int(_env("WATCH_MAX_FILES_PER_BATCH", "256"))
