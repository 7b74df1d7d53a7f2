from etcdpy.worker.main import main

main()
