<?php
// The lab's application: `/health` reports the database, Redis and the queue the way the
// seeds' Laravel health route does; `/` does one query and one cache read, like a page would.
// Credentials come from the lab's config file, never from the inventory.
declare(strict_types=1);

$cfg = json_decode((string) file_get_contents(getenv('LAB_CONFIG') ?: ($_SERVER['LAB_CONFIG'] ?? '')), true);
if (!is_array($cfg)) {
    http_response_code(500);
    header('Content-Type: application/json');
    echo json_encode(['status' => 'error', 'error' => 'lab config unreadable']);
    exit;
}
mysqli_report(MYSQLI_REPORT_OFF);

// The server's environment file (`DB_HOST=...`, as a Laravel `.env`) overrides where the
// database is: a failover repoints it there.
$envFile = $_SERVER['LAB_ENV'] ?? '';
if ($envFile !== '' && is_readable($envFile)) {
    foreach (file($envFile, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
        if (preg_match('/^(DB_HOST|DB_PORT)=(.*)$/', trim($line), $m)) {
            $cfg['db'][$m[1] === 'DB_HOST' ? 'host' : 'port'] = trim($m[2]);
        }
    }
}

// The slow-api drill: php-fpm degraded as a leak in its workers would, until it restarts. The
// flag names the php-fpm master processes whose workers answer 400 ms late (or `all`: the
// application itself is slow, which no restart cures).
$slow = @file_get_contents($cfg['flags_dir'] . '/slow-api');
if ($slow !== false) {
    $degraded = preg_split('/\s+/', trim($slow));
    $master = function_exists('posix_getppid') ? (string) posix_getppid() : '';
    if (in_array('all', $degraded, true) || in_array($master, $degraded, true)) {
        usleep(400000);
    }
}

function db_connect(array $cfg): array {
    $m = mysqli_init();
    $m->options(MYSQLI_OPT_CONNECT_TIMEOUT, 2);
    $d = $cfg['db'];
    if (!@$m->real_connect($d['host'], $d['user'], $d['password'], $d['database'], (int) $d['port'])) {
        return [null, 'error: ' . $m->connect_errno . ' ' . $m->connect_error];
    }
    return [$m, 'ok'];
}

function redis_master(array $cfg): array {
    $r = $cfg['redis'];
    foreach ($r['sentinels'] as [$host, $port]) {
        try {
            $s = new RedisSentinel(['host' => $host, 'port' => (int) $port, 'connectTimeout' => 0.5]);
            $addr = $s->getMasterAddrByName($r['master_name']);
            if (is_array($addr) && count($addr) === 2) {
                return [$addr[0], (int) $addr[1]];
            }
        } catch (Throwable $e) {
            // Try the next sentinel.
        }
    }
    return [$r['master'][0], (int) $r['master'][1]];
}

function redis_connect(array $cfg): array {
    try {
        [$host, $port] = redis_master($cfg);
        $redis = new Redis();
        $redis->connect($host, $port, 1.0);
        $redis->auth($cfg['redis']['password']);
        $pong = $redis->ping();
        if ($pong !== true && $pong !== '+PONG' && $pong !== 'PONG') {
            return [null, 'error: unexpected PING reply'];
        }
        return [$redis, 'ok'];
    } catch (Throwable $e) {
        return [null, 'error: ' . $e->getMessage()];
    }
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
// Which deployment answers (blue or green, seed 003). The bad-release drill breaks one.
$color = $_SERVER['APP_COLOR'] ?? 'blue';
$broken = @file_get_contents($cfg['flags_dir'] . '/bad-release');
if ($broken !== false && in_array($color, preg_split('/\s+/', trim($broken)), true)) {
    http_response_code(500);
    header('Content-Type: text/plain');
    echo "the $color release is broken: Uncaught Error: Call to undefined method Cart::totals()\n";
    exit;
}
header('Content-Type: application/json');
header('X-Lab-Color: ' . $color);
header('X-Lab-Host: ' . ($_SERVER['LAB_HOST'] ?? 'unknown'));

if ($path === '/health') {
    [$db, $dbStatus] = db_connect($cfg);
    if ($db !== null) {
        if (!$db->query('SELECT 1')) {
            $dbStatus = 'error: ' . $db->errno . ' ' . $db->error;
        }
        $db->close();
    }
    [$redis, $redisStatus] = redis_connect($cfg);
    $queue = [];
    if ($redis !== null) {
        try {
            foreach ($cfg['queues'] as $name => $key) {
                $queue[$name] = (int) $redis->lLen($key);
            }
        } catch (Throwable $e) {
            $redisStatus = 'error: ' . $e->getMessage();
        }
        $redis->close();
    }
    $ok = $dbStatus === 'ok' && $redisStatus === 'ok';
    http_response_code($ok ? 200 : 503);
    echo json_encode([
        'status' => $ok ? 'ok' : ($dbStatus === 'ok' ? 'degraded' : 'error'),
        'database' => $dbStatus,
        'redis' => $redisStatus,
        'queue' => (object) $queue,
        'host' => $_SERVER['LAB_HOST'] ?? 'unknown',
        'color' => $color,
    ]) . "\n";
    exit;
}

// `/`: one database query and one cache read.
$t0 = microtime(true);
[$db, $dbStatus] = db_connect($cfg);
$users = null;
if ($db !== null) {
    $res = $db->query('SELECT COUNT(*) FROM users');
    $users = $res ? (int) $res->fetch_row()[0] : null;
    $db->close();
}
[$redis, $redisStatus] = redis_connect($cfg);
$hits = null;
if ($redis !== null) {
    try {
        // The page cache lives in database 2 (seed 000); a Redis that refuses writes
        // (maxmemory reached) fails the page.
        $redis->select(2);
        if ($redis->setEx('page:' . $path, 60, json_encode(['users' => $users])) === false) {
            $redisStatus = 'error: page cache: ' . ($redis->getLastError() ?? 'write refused');
        }
        $redis->select(0);
        $hits = $redis->incr('marg_cache_page_hits');
    } catch (Throwable $e) {
        $redisStatus = 'error: ' . $e->getMessage();
    }
    $redis->close();
}
$ok = $db !== null && $redis !== null && $redisStatus === 'ok';
http_response_code($ok ? 200 : 503);
echo json_encode([
    'app' => 'marg',
    'host' => $_SERVER['LAB_HOST'] ?? 'unknown',
    'users' => $users,
    'page_hits' => $hits,
    'database' => $dbStatus,
    'redis' => $redisStatus,
    'ms' => round((microtime(true) - $t0) * 1000, 1),
]) . "\n";
