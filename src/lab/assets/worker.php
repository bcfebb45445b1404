<?php
// The lab's queue worker, started as `php worker.php queue:work redis --queue=default` so that
// its command line reads like the seeds' `artisan queue:work`. It pops jobs with BRPOP from the
// Redis master (found through Sentinel) and counts each processed job. After a failover the old master refuses BRPOP (READONLY),
// and the worker asks Sentinel again.
declare(strict_types=1);

$cfg = json_decode((string) file_get_contents((string) getenv('LAB_CONFIG')), true);
if (!is_array($cfg)) {
    fwrite(STDERR, "worker: lab config unreadable\n");
    exit(1);
}
cli_set_process_title('php artisan queue:work redis --queue=default (opsdeck lab worker1)');
// SIGTERM keeps its default action: a job here is one INCR, nothing to finish gracefully.
$running = true;

function master(array $cfg): array {
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

$keys = array_values($cfg['queues']);
while ($running) {
    try {
        [$host, $port] = master($cfg);
        $redis = new Redis();
        $redis->connect($host, $port, 1.0);
        $redis->auth($cfg['redis']['password']);
        $redis->setOption(Redis::OPT_READ_TIMEOUT, 3);
        fwrite(STDERR, date('c') . " worker: consuming " . implode(',', $keys) . " on $host:$port\n");
        while ($running) {
            $job = $redis->brPop($keys, 1);
            if (is_array($job) && count($job) === 2) {
                $redis->incr('jobs:processed');
            }
        }
        $redis->close();
    } catch (Throwable $e) {
        fwrite(STDERR, date('c') . ' worker: ' . $e->getMessage() . "\n");
        sleep(1);
    }
}
